"""An installed copy works without the checkout: the wheel (built once per session) goes into a fresh venv, and
from a folder outside the checkout the package and the Hub modules import, presets list and build, and the console
commands generate a tiny set, train the tiny preset a few steps, evaluate, predict and publish with `--dry-run`.

The fresh venv has no dependencies of its own: a `.pth` file appends the shared venv's site-packages after its
own. A path added by a `.pth` line is not a site directory, so the shared venv's `.pth` files (among them the
editable install's import hook for the checkout) are not run, and the wheel's copy is the one imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from visionclip.hub import HUB_CODE_FILES

ROOT = Path(__file__).resolve().parents[1]
HUB_MODULES = [Path(name).stem for name in HUB_CODE_FILES]
WHEEL_SOURCES = ("pyproject.toml", "README.md", *HUB_CODE_FILES)
TIMEOUT = 600  # seconds; only so that a hang fails instead of blocking the suite


class Installed:
    """The fresh venv with the wheel installed, and a working folder outside the checkout."""

    def __init__(self, root: Path):
        self.root = root
        self.venv = root / "venv"
        self.python = self.venv / "bin" / "python"
        self.site_packages = Path(
            sysconfig.get_path("purelib", vars={"base": str(self.venv), "platbase": str(self.venv)})
        )
        self.work = root / "work"
        self.env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        self.env.update(
            PATH=f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            HF_HUB_OFFLINE="1",
            HF_HOME=str(root / "hf"),
            XDG_CACHE_HOME=str(root / "cache"),
            TOKENIZERS_PARALLELISM="false",
        )

    def run(self, *command: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            command, cwd=self.work, env=self.env, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
        assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-4000:]}"
        return done

    def command(self, name: str, *args: str) -> subprocess.CompletedProcess:
        """A console command of the installed package, found on PATH as a user would."""
        executable = shutil.which(name, path=self.env["PATH"])
        assert executable and Path(executable).is_relative_to(self.venv), f"{name} is not installed in the venv"
        return self.run(executable, *args)


def build_wheel(into: Path) -> Path:
    """Build the wheel from a copy of exactly what it packages, so the checkout gets no build/ or egg-info."""
    source = into / "source"
    source.mkdir()
    for name in WHEEL_SOURCES:
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "visionclip", source / "visionclip", ignore=shutil.ignore_patterns("__pycache__"))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(source)]
    subprocess.run([*command, "-w", str(into / "wheel")], check=True, timeout=TIMEOUT, capture_output=True)
    (wheel,) = (into / "wheel").glob("visionclip-*.whl")
    return wheel


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("install")
    wheel = build_wheel(root)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True, timeout=TIMEOUT)
    venv = Installed(root)
    shared_site_packages = sysconfig.get_path("purelib")
    (venv.site_packages / "shared_dependencies.pth").write_text(shared_site_packages + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(venv.python), "install", "--no-deps", "--no-index", "-q"]
    subprocess.run([*pip, str(wheel)], check=True, timeout=TIMEOUT, capture_output=True)
    venv.work.mkdir()
    return venv


@pytest.fixture(scope="session")
def dataset(installed: Installed) -> Path:
    out = installed.work / "dataset"
    installed.command(
        "visionclip-generate", "--out", str(out), "--splits", "train=32,validation=16", "--image-size", "64"
    )
    return out


@pytest.fixture(scope="session")
def trained(installed: Installed, dataset: Path) -> Path:
    out = installed.work / "run"
    installed.command(
        "visionclip-train",
        *(
            "--preset",
            "tiny",
            "--dataset",
            str(dataset),
            "--max-steps",
            "3",
            "--warmup-steps",
            "1",
            "--batch-size",
            "8",
        ),
        *("--report-to", "none", "--mixed-precision", "no", "--num-workers", "0"),
        *("--output-dir", str(out), "--eval-every", "0"),
    )
    return out / "model"


PROBE = """
import importlib, json, pkgutil, sys, visionclip
modules = [name for _, name, _ in pkgutil.walk_packages(visionclip.__path__, "visionclip.") if not name.endswith(".__main__")]
for name in [*sys.argv[1:], *modules]:
    importlib.import_module(name)
files = {name: sys.modules[name].__file__ for name in ["visionclip", *sys.argv[1:]]}
json.dump({"files": files, "modules": modules, "path": sys.path}, sys.stdout)
"""


def test_the_installed_copy_is_imported_not_the_checkout(installed: Installed):
    probe = json.loads(installed.run(str(installed.python), "-c", PROBE, *HUB_MODULES).stdout)
    for name, file in probe["files"].items():
        assert Path(file).is_relative_to(installed.site_packages), f"{name} imported from {file}"
    assert {"visionclip.presets", "visionclip.cli.generate", "visionclip.resources"} <= set(probe["modules"])
    path = [str(Path(entry).resolve()) for entry in probe["path"] if entry]
    own, shared = str(installed.site_packages.resolve()), str(Path(sysconfig.get_path("purelib")).resolve())
    assert path.index(own) < path.index(shared)
    assert not any(Path(entry).resolve() == ROOT for entry in probe["path"] if entry)


def test_presets_list_and_build(installed: Installed):
    listed = installed.run(str(installed.python), "-m", "visionclip.presets", "list").stdout.split()
    assert {"tiny", "small", "flair-reference"} <= set(listed)
    folder = installed.work / "untrained-tiny"
    installed.run(str(installed.python), "-m", "visionclip.presets", "build", "tiny", str(folder))
    assert {"config.json", "model.safetensors", *HUB_CODE_FILES} <= {p.name for p in folder.iterdir()}


def test_generate_writes_the_splits(dataset: Path):
    assert len(list((dataset / "data").glob("train-*.parquet"))) == 1
    assert len(list((dataset / "data").glob("validation-*.parquet"))) == 1


def test_train_exports_a_model_folder(trained: Path):
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in trained.iterdir()}


def test_evaluate(installed: Installed, trained: Path):
    out = installed.work / "eval"
    installed.command(
        "visionclip-eval",
        *("--model", str(trained), "--dataset", "hrf:synthetic", "--synthetic-count", "12"),
        *("--output-dir", str(out), "--bootstrap", "0", "--no-random-baseline", "--num-workers", "0"),
        *("--modes", "zero-shot"),
    )
    (entry,) = json.loads((out / "results.json").read_text())
    assert entry["metrics"]["num_samples"] == 12


def test_predict(installed: Installed, trained: Path):
    image = sorted((trained / "examples").glob("*.png"))[0]
    done = installed.command("visionclip-predict", "--model", str(trained), "--classes", "glaucoma,normal", str(image))
    assert image.name in done.stdout and "glaucoma" in done.stdout


def test_publish_dry_run(installed: Installed, trained: Path):
    done = installed.command("visionclip-publish", str(trained), "me/visionclip-tiny", "--dry-run")
    assert "dry run: nothing uploaded" in done.stdout
