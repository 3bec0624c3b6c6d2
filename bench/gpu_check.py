"""What a GPU user meets first, measured in one unattended run of about 9 minutes on one H100.

Stages, each in its own process under its own time budget (a stage that overruns is stopped, recorded as
`overrun` with what it had measured, and the next one starts; every stage records each figure as soon as it has it):

    data            the project's generator writes a small 512 px PNG set (15 workers), and the same images
                    re-encoded make the JPEG set (bench/gpu_check_data.py: what `--image-format jpeg` would write)
    step            the flair-reference recipe's training step (ResNet-50 + BERT-base, 512 px, both towers trained:
                    the recipe's lock_image, lock_text and loss) at batch 256 in bf16, on one
                    batch read once: images/s and peak GPU memory without, then with gradient checkpointing; then
                    MFU: FLOPs counted with torch's FlopCounterMode (as docs/gpu_hours.md does, on a third trainer at
                    batch 16) against a bf16 matmul peak measured here
    layout_compile  the same step at batch 128 without checkpointing: channels-last, contiguous, and torch.compile
                    last, only where the stage has COMPILE_NEEDS_S (120 s) left (it records why not otherwise:
                    compiling this model took 91 s on the H100)
    loader          DataLoader images/s with 8 and 15 workers on the PNG and the JPEG set, against the step rate
    main_job        `train.py` with its defaults on the GPU (15 loader workers): the held-out AUROC curve against the
                    CPU run's figures in README.md; the same schedule (train.py's defaults), so each point compares
                    with the CPU run's at the same step; the budget stops it where the GPU is slower than expected;
                    not run (recorded with the reason) where the default preset's packaged towers are not installed
    ddp             two train.py processes on the one GPU (gloo): DDP, gradient accumulation, a checkpoint and a
                    resume from it; checks that the learning rate after N steps is the single-process schedule's
                    (it is not where each of N processes steps the scheduler)

Budgets (BUDGETS) come from the runs on an NVIDIA H100 80GB HBM3 machine with 16 cores on 2026-11-27 (docs/gpu_hours.md
has their figures): data took 21 s, step 91 s (both towers trained, as the recipe has it), layout_compile 150 s with a
91 s compile, loader 40 s and ddp 84 s; main_job took 124 s when train.py's default was the `small` preset. main_job
needs the packaged towers (visionclip/packaged_towers.py), which a device machine cannot be given (all-MiniLM-L6-v2's
wheel is 88 MiB, a call carries 64): the stage is then recorded as not run and spends none of the time. Without it the
stages' budgets add up to 555 s, so with the wheels' install the run fits in one 600 s call; with it, 725 s (about 12
minutes).

It writes `gpu_check.json` (every figure, each stage's status) and `gpu_check.log` (everything printed) to `--out`
(default `$OUT`, else runs/gpu_check) and exits 1 when a stage or a check failed.

Packages. The device machines have Python 3.12, torch 2.11 (CUDA 13.0) and transformers 5.17, and no `datasets`
(see /work/.library/device/KINDS.md); this project needs transformers >= 5.23 and `datasets`. The script installs
the wheels in `.whl/` at the repository root (git-ignored) into a private folder and restarts itself with that
folder first on the path, for itself and every process it starts. Prepare them here, once, in the repository root
(14 MiB: transformers 5.24.0, datasets 5.2.0 and its two missing dependencies, dill 0.4.1 and multiprocess 0.70.19,
the versions this repository is tested with):

    python bench/gpu_check.py --prepare-wheels

which runs `python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl
transformers==5.24.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19`.

On the device (the `run` tool sends the checkout the session started in, so prepare `.whl/` there; it is carried
because it is ignored; 555 s of stages at most, and the machine's start comes on top):

    run(command="PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --out $OUT --stages data,step,layout_compile,loader,ddp",
        carry=[".whl"], timeout_s=600)

A stage that overran can be rerun alone with more time, e.g. `--stages data,ddp --stage-budget ddp=200` (step,
layout_compile, loader and ddp read the data stage's sets: list `data` first).

Here, in CI (tests/test_gpu_check.py): `python bench/gpu_check.py --dry-run --out DIR` runs every stage at tiny
sizes (tiny preset, 64 px, a few steps) on the CPU; its figures mean nothing, it checks that every stage works.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpu_check_stages import STAGES as STAGE_FUNCTIONS

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / ".whl"
SITE_VARIABLE = "VISIONCLIP_GPU_CHECK_SITE"  # set on the restart: the wheels' folder on the path, or "none"
# Missing or too old on the device machines; pinned to the versions this repository's venv tests with.
CARRIED = {"transformers": "5.24.0", "datasets": "5.2.0", "dill": "0.4.1", "multiprocess": "0.70.19"}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
OPTIONAL = {"evaluate"}  # pyproject dependencies the check does not use (eval_zeroshot.py's report does)
STAGES = tuple(STAGE_FUNCTIONS)  # in the order they run
# Seconds on one H100 with 16 cores, 725 together, 555 without main_job (see the docstring); the dry run's are
# generous limits for a busy 2-core CPU.
BUDGETS = {"data": 35, "step": 130, "layout_compile": 220, "loader": 60, "main_job": 170, "ddp": 110}
DRY_RUN_BUDGETS = dict.fromkeys(STAGES, 600)


def prepare_wheels_command() -> list[str]:
    platforms = [argument for platform in PLATFORMS for argument in ("--platform", platform)]
    pins = [f"{name}=={version}" for name, version in CARRIED.items()]
    return [
        *(sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12"),
        *("--implementation", "cp", *platforms, "-d", str(WHEELS), *pins),
    ]


def unmet_requirements() -> dict[str, str]:
    """pyproject.toml's dependencies that are missing or outside their version range here: {name: why}."""
    from importlib.metadata import PackageNotFoundError, version

    import tomllib
    from packaging.requirements import Requirement

    unmet = {}
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in map(Requirement, dependencies):
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            unmet[requirement.name] = f"{requirement} needed, not installed"
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            unmet[requirement.name] = f"{requirement} needed, {installed} installed"
    return unmet


def project_importable() -> bool:
    """Whether this process can import the package and the Hub modules (installed, e.g. by `make setup`)."""
    return all(importlib.util.find_spec(name) is not None for name in ("visionclip", "configuration_visionclip"))


def install_carried_wheels_and_restart() -> None:
    """On a bare machine (a dependency missing or too old and `.whl/` holding wheels, or the project not installed):
    install the wheels into a private folder, put it and the checkout first on PYTHONPATH, and restart this script
    once; the processes it starts inherit that path."""
    if os.environ.get(SITE_VARIABLE):
        return
    needed = [why for name, why in unmet_requirements().items() if name not in OPTIONAL]
    wheels = sorted(WHEELS.glob("*.whl"))
    if needed and not wheels:
        print(f"gpu_check: {'; '.join(needed)}, and no wheels in {WHEELS}: see --prepare-wheels", flush=True)
    install = bool(needed and wheels)
    if not install and project_importable():
        return
    site = Path(tempfile.gettempdir()) / "visionclip-gpu-check-site"
    if install:
        print(f"gpu_check: {'; '.join(needed)}: installing {[w.name for w in wheels]} into {site}", flush=True)
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
        subprocess.run([*pip, "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, wheels)], check=True)
    path = os.pathsep.join(p for p in (str(site) if install else "", str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    os.execve(
        sys.executable,
        [sys.executable, *sys.argv],
        {**os.environ, SITE_VARIABLE: str(site) if install else "none", "PYTHONPATH": path},
    )


def environment_report() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in (
        *("torch", "transformers", "datasets", "accelerate", "huggingface_hub", "tokenizers", "safetensors"),
        *("pyarrow", "fsspec", "numpy", "pillow", "regex", "dill", "multiprocess"),
    ):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        "python": sys.version.split()[0],
        "packages": packages,
        "unmet_requirements": unmet_requirements(),
        "carried_wheels": sorted(w.name for w in WHEELS.glob("*.whl")),
        "carried_site": os.environ.get(SITE_VARIABLE),
        "cpu_count": os.cpu_count(),
    }


def run_budgeted(command: list[str], budget_s: float, log) -> tuple[str, int | None, float]:
    """Run `command` in its own process group with output to `log`; stop the whole group at `budget_s`.
    Returns (status: ok | failed | overrun, return code, seconds)."""
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    try:
        returncode = process.wait(timeout=budget_s)
    except subprocess.TimeoutExpired:
        _stop_group(process)
        return "overrun", None, time.monotonic() - started
    return ("ok" if returncode == 0 else "failed"), returncode, time.monotonic() - started


def _stop_group(process: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 30)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_stages(args: argparse.Namespace, out: Path, work: Path) -> dict:
    budgets = {**(DRY_RUN_BUDGETS if args.dry_run else BUDGETS), **args.stage_budget}
    report = {
        "script": "bench/gpu_check.py",
        "dry_run": args.dry_run,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment_report(),
        "stages": {},
    }
    total = args.total_budget_s or sum(budgets[stage] for stage in args.stages)
    report["total_budget_s"] = total
    deadline = time.monotonic() + total
    with open(out / "gpu_check.log", "a") as log:
        for stage in args.stages:
            left = deadline - time.monotonic()
            budget = min(budgets[stage], left)
            result_file = work / f"{stage}.json"
            entry: dict = {"budget_s": round(budget, 1)}
            unavailable = None if args.dry_run else why_stage_cannot_run(stage)
            if unavailable:
                entry["status"] = f"not run: {unavailable}"
            elif left < 5:
                entry["status"] = "skipped: no time left in the total budget"
            else:
                print(f"gpu_check: stage {stage} (budget {budget:.0f} s)", file=log, flush=True)
                command = [sys.executable, str(Path(__file__).resolve()), "--stage", stage, "--work", str(work)]
                command += ["--stage-seconds", str(budget)]  # so that a stage can skip what cannot fit
                status, returncode, seconds = run_budgeted(
                    [*command, *(["--dry-run"] if args.dry_run else [])], budget, log
                )
                entry.update(status=status, returncode=returncode, seconds=round(seconds, 1))
            entry["result"] = json.loads(result_file.read_text()) if result_file.is_file() else {}
            report["stages"][stage] = entry
            print(f"gpu_check: stage {stage}: {entry['status']}", flush=True)
            _write_report(out, report)
    report["checks"] = checks(report)
    report["ok"] = report_ok(report)
    _write_report(out, report)
    return report


def report_ok(report: dict) -> bool:
    """Some stage ran, every stage that could run here finished, and every check passed (a stage recorded as not
    run, for what this machine lacks, is no failure)."""
    ran = [entry for entry in report["stages"].values() if not entry["status"].startswith("not run")]
    return bool(ran) and all(entry["status"] == "ok" for entry in ran) and all(report["checks"].values())


def why_stage_cannot_run(stage: str) -> str | None:
    """Why a stage cannot run on this machine, found before its budget starts, or None. main_job trains train.py's
    default preset, whose packaged towers (visionclip/packaged_towers.py) a device machine lacks: all-MiniLM-L6-v2's
    wheel alone (88 MiB) is more than the 64 MiB a call can carry."""
    if stage != "main_job":
        return None
    from visionclip.packaged_towers import PACKAGED_TOWERS, MissingTowerPackageError
    from visionclip.presets import load_preset
    from visionclip.training.config import TrainConfig

    preset = TrainConfig().preset
    try:
        for tower in load_preset(preset).pretrained_towers.values():
            if tower in PACKAGED_TOWERS:
                PACKAGED_TOWERS[tower].package_dir()
    except MissingTowerPackageError as error:
        return f"train.py's default preset {preset!r}: {error}"
    return None


def checks(report: dict) -> dict[str, bool]:
    """The pass/fail facts of the run (besides every stage finishing)."""
    found = {}
    ddp = report["stages"].get("ddp", {}).get("result", {})
    if "lr_schedule" in ddp:
        found["ddp_lr_after_n_steps_is_the_single_process_schedule"] = ddp["lr_schedule"]["ok"]
    if "checkpoint_files" in ddp:
        found["ddp_checkpoint_has_every_process_stream"] = ddp["checkpoint_files"]["every_rank_stream"]
    return found


def _write_report(out: Path, report: dict) -> None:
    from visionclip.shards import atomic_write_bytes

    atomic_write_bytes(out / "gpu_check.json", (json.dumps(report, indent=2) + "\n").encode())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "runs" / "gpu_check"))
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, removed at the end)")
    parser.add_argument("--dry-run", action="store_true", help="every stage at tiny sizes, on the CPU")
    parser.add_argument("--stages", type=lambda text: text.split(","), default=list(STAGES), help=",".join(STAGES))
    parser.add_argument("--total-budget-s", type=float, help="a cap on all stages together (default: their sum)")
    parser.add_argument(
        "--stage-budget",
        action="append",
        default=[],
        metavar="STAGE=SECONDS",
        help=f"override a stage's time budget (defaults: {', '.join(f'{k}={v}' for k, v in BUDGETS.items())})",
    )
    parser.add_argument("--prepare-wheels", action="store_true", help="download the wheels the device lacks")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # internal: run one stage here
    parser.add_argument("--stage-seconds", type=float, help=argparse.SUPPRESS)  # internal: that stage's budget
    args = parser.parse_args(argv)
    budgets = dict(item.partition("=")[::2] for item in args.stage_budget)
    unknown = sorted((set(args.stages) | set(budgets)) - set(STAGES))
    if unknown:
        parser.error(f"unknown stages {unknown}; choose from {', '.join(STAGES)}")
    try:
        args.stage_budget = {name: float(seconds) for name, seconds in budgets.items()}
    except ValueError:
        parser.error(f"--stage-budget takes STAGE=SECONDS, got {args.stage_budget}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--ddp-worker"]:  # internal: one torchrun process of the ddp stage
        from gpu_check_stages import ddp_worker

        return ddp_worker(argv[1:])
    args = parse_args(argv)
    if args.prepare_wheels:
        return subprocess.run(prepare_wheels_command(), cwd=ROOT).returncode
    if args.stage:
        from gpu_check_stages import run_stage

        return run_stage(args.stage, args.work, args.dry_run, args.stage_seconds)
    install_carried_wheels_and_restart()
    os.environ.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TQDM_MININTERVAL="5")
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        report = run_stages(args, args.out, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"gpu_check: {'all stages and checks passed' if report['ok'] else 'FAILED'}; see {args.out}/gpu_check.json")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
