"""Creating the Space: what `space/deploy.py --dry-run` stages (the app and the code it imports, nothing else), and
its requirements kept equal to pyproject.toml's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gradio
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
tomllib = pytest.importorskip("tomllib")  # Python 3.11+
TIMEOUT = 600  # seconds; only so that a hang fails instead of blocking the suite


def test_requirements_are_the_package_dependencies_and_the_space_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = (ROOT / "space" / "requirements.txt").read_text().splitlines()
    required = [line for line in lines if line.strip() and not line.startswith("#")]
    assert required == [*project["dependencies"], *project["optional-dependencies"]["space"]]


def test_readme_front_matter_describes_a_gradio_space():
    front = yaml.safe_load((ROOT / "space" / "README.md").read_text().split("---")[1])
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py" and front["license"] == "apache-2.0"
    assert front["sdk_version"].split(".")[0] == gradio.__version__.split(".")[0]


def test_dry_run_stages_the_app_and_the_code_it_imports_and_uploads_nothing():
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_TOKEN="")
    done = subprocess.run(
        [sys.executable, "space/deploy.py", "me/visionclip-demo", "--model", "me/visionclip", "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    staged = {line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ")}
    for name in (
        "app.py",
        "fundus_demo.py",
        "README.md",
        "requirements.txt",
        "examples/glaucoma.jpg",
        "modeling_visionclip.py",
        "image_processing_visionclip.py",
        "visionclip/explain/overlay.py",
    ):
        assert name in staged, name
    assert not {name for name in staged if "__pycache__" in name or name.endswith(".pyc")}
    assert not staged & {"deploy.py", "make_examples.py"}
    assert "VISIONCLIP_MODEL=me/visionclip" in done.stdout and done.stdout.rstrip().endswith("nothing uploaded")


def test_deploy_refuses_a_malformed_space_id():
    done = subprocess.run(
        [sys.executable, "space/deploy.py", "not-an-id", "--model", "me/visionclip", "--dry-run"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 2 and "owner/name" in done.stderr
