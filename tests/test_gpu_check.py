"""bench/gpu_check.py: its dry run (every stage at tiny sizes, on the CPU), its time budgets and its DDP LR check."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH = REPO_ROOT / "bench"


def load_bench(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # gpu_check imports gpu_check_stages beside it
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_gpu_check(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "LOCAL_RANK", "RANK", "WORLD"))}
    env.pop("OUT", None)
    return subprocess.run(
        [sys.executable, str(BENCH / "gpu_check.py"), *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=3000,  # only so that a hang fails; the dry run takes a few minutes on a busy 2-core machine
    )


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict, Path]:
    out, work = tmp_path_factory.mktemp("gpu_check_out"), tmp_path_factory.mktemp("gpu_check_work")
    done = run_gpu_check("--dry-run", "--out", str(out), "--work", str(work))
    assert (out / "gpu_check.json").is_file(), done.stdout[-2000:] + done.stderr[-2000:]
    return done, json.loads((out / "gpu_check.json").read_text()), out


def test_dry_run_runs_every_stage_and_reports_its_figures(dry_run):
    done, report, out = dry_run
    gpu_check = load_bench("gpu_check")
    log = (out / "gpu_check.log").read_text()
    statuses = {name: stage["status"] for name, stage in report["stages"].items()}
    assert statuses == dict.fromkeys(gpu_check.STAGES, "ok"), (statuses, log[-4000:])
    assert done.returncode == (0 if report["ok"] else 1)
    assert report["dry_run"] is True and report["environment"]["unmet_requirements"] == {}

    data = report["stages"]["data"]["result"]
    assert data["png"]["images"] == data["jpeg"]["images"] > 0
    step = report["stages"]["step"]["result"]
    assert step["matmul_peak_tflops"] > 0 and step["step_gflops_per_image"] > 0
    assert step["precision"].startswith("mixed precision auto -> ")
    recipe = yaml.safe_load((REPO_ROOT / "configs" / "train" / "flair_reference.yaml").read_text())
    assert recipe["lock_image"] is False and step["trains"]["lock_image"] is False  # the recipe trains both towers
    assert step["trains"]["loss"] == recipe["loss"]
    for checkpointing in ("off", "on"):
        result = step[f"batch_8_gradient_checkpointing_{checkpointing}"]
        assert result["images_per_s"] > 0 and result["mfu"] > 0 and math.isfinite(result["loss"])
    layout = report["stages"]["layout_compile"]["result"]
    assert all(layout[name]["images_per_s"] > 0 for name in ("channels_last", "contiguous", "torch_compile"))
    loader = report["stages"]["loader"]["result"]
    for key in ("png_1_workers", "png_2_workers", "jpeg_1_workers", "jpeg_2_workers"):
        assert loader[key]["images_per_s"] > 0 and loader[key]["vs_step_rate"] > 0, key

    main_job = report["stages"]["main_job"]["result"]
    assert [point["step"] for point in main_job["curve"]] == [2, 4]
    assert all(0 <= point["mean_auroc"] <= 1 for point in main_job["curve"])
    assert sorted(map(int, main_job["cpu_curve_in_readme"])) == main_job_evaluation_steps()
    assert main_job["precision"].startswith("mixed precision auto -> ")

    ddp = report["stages"]["ddp"]["result"]
    assert ddp["first_run"] == ddp["resumed_run"] == "ok" and ddp["checkpoint_files"]["every_rank_stream"]
    schedule = ddp["lr_schedule"]
    assert schedule["steps"] == 4 and schedule["processes"] == 2
    assert schedule["expected"] == pytest.approx(lr_after_steps(4))
    assert report["checks"]["ddp_lr_after_n_steps_is_the_single_process_schedule"] == schedule["ok"]


def lr_after_steps(steps: int, warmup: int = 2, total: int = 8, lr: float = 1e-3, min_lr: float = 1e-5) -> float:
    return load_bench("gpu_check_stages").scheduled_lr(steps, warmup, total, lr, min_lr)


def test_two_processes_follow_the_single_process_lr_schedule(dry_run):
    done, report, _ = dry_run
    schedule = report["stages"]["ddp"]["result"]["lr_schedule"]
    assert schedule["ok"], f"the learning rate after 4 steps of 2 processes is {schedule}"
    assert report["ok"] and done.returncode == 0


def test_the_lr_check_tells_per_process_scheduler_steps_apart():
    stages = load_bench("gpu_check_stages")
    arguments = {"steps": 4, "processes": 2, "warmup": 2, "max_steps": 8, "lr": 1e-3, "min_lr": 1e-5}
    assert stages.lr_schedule_check(lr_after_steps(4), **arguments)["ok"]
    stepped_twice = stages.lr_schedule_check(lr_after_steps(8), **arguments)
    assert not stepped_twice["ok"] and stepped_twice["if_every_process_stepped_the_scheduler"] == lr_after_steps(8)


def main_job_evaluation_steps() -> list[int]:
    """The steps at which train.py's defaults evaluate: the README's curve must be the current main job's."""
    from visionclip.training.config import TrainConfig

    config = TrainConfig()
    return list(range(config.eval_every, config.max_steps + 1, config.eval_every))


def test_the_readme_curve_is_found():
    stages = load_bench("gpu_check_stages")
    curve = stages.readme_cpu_curve((REPO_ROOT / "README.md").read_text())
    assert sorted(curve) == main_job_evaluation_steps() and all(0.5 < auroc < 1 for auroc in curve.values())
    text = "held-out mean zero-shot AUROC 0.7 / 0.8\n/ 0.9 after 10 / 20 / 1,000 steps"
    assert stages.readme_cpu_curve(text) == {10: 0.7, 20: 0.8, 1000: 0.9}


def test_the_jpeg_set_derived_from_the_png_set_is_the_generators_jpeg_set(tmp_path):
    import pyarrow.parquet as pq

    from visionclip.shards import MANIFEST
    from visionclip.synthetic.writer import SampleMaker, write_parquet_dataset

    derive_jpeg_set = load_bench("gpu_check_data").derive_jpeg_set
    splits, prevalence = {"train": 6, "validation": 3}, tuple(sorted({"not_fundus": 0.2, "is_amd": 0.3}.items()))
    write_parquet_dataset(tmp_path / "png", splits, SampleMaker(64, 3, prevalence), rows_per_shard=4)
    derive_jpeg_set(tmp_path / "png", tmp_path / "derived", workers=2)
    generated = SampleMaker(64, 3, prevalence, image_format="jpeg", jpeg_quality=95)
    write_parquet_dataset(tmp_path / "generated", splits, generated, rows_per_shard=4)

    derived, direct = tmp_path / "derived", tmp_path / "generated"
    assert (derived / MANIFEST).read_text() == (direct / MANIFEST).read_text()
    shard_names = sorted(p.name for p in (direct / "data").iterdir())
    assert len(shard_names) == 3 and sorted(p.name for p in (derived / "data").iterdir()) == shard_names
    for name in shard_names:
        assert pq.read_table(derived / "data" / name).equals(pq.read_table(direct / "data" / name)), name
    with pytest.raises(ValueError, match="not a PNG set"):
        derive_jpeg_set(direct, tmp_path / "again")


def test_torch_compile_is_left_out_and_said_so_where_the_stage_budget_cannot_hold_it(tmp_path):
    needs = load_bench("gpu_check_stages").COMPILE_NEEDS_S
    out = tmp_path / "out"
    budget = f"layout_compile={needs - 10}"
    done = run_gpu_check("--dry-run", "--stages", "data,layout_compile", "--stage-budget", budget, "--out", str(out))
    report = json.loads((out / "gpu_check.json").read_text())
    layout = report["stages"]["layout_compile"]
    assert layout["status"] == "ok", done.stdout[-2000:] + (out / "gpu_check.log").read_text()[-4000:]
    assert layout["result"]["channels_last"]["images_per_s"] > 0 and layout["result"]["contiguous"]["images_per_s"] > 0
    assert layout["result"]["torch_compile"]["status"].startswith(f"not run: compiling this model needs about {needs}")
    assert "--stage-budget layout_compile=" in layout["result"]["torch_compile"]["status"]


def test_a_stage_over_its_budget_is_stopped_recorded_and_the_next_one_starts(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    done = run_gpu_check(
        "--dry-run", "--stages", "data,loader", "--stage-budget", "data=1", "--out", str(out), "--work", str(work)
    )
    assert done.returncode == 1
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["stages"]["data"]["status"] == "overrun" and report["stages"]["data"]["budget_s"] == 1
    assert report["stages"]["loader"]["status"] == "failed"  # it ran, and found no generated set
    assert "no generated set" in report["stages"]["loader"]["result"]["error"]
    assert report["ok"] is False


def test_main_job_is_recorded_as_not_run_where_the_default_presets_towers_are_missing(monkeypatch):
    gpu_check = load_bench("gpu_check")
    assert gpu_check.why_stage_cannot_run("main_job") is None  # make setup installs the packaged towers
    assert gpu_check.why_stage_cannot_run("ddp") is None

    from visionclip import packaged_towers

    real_find_spec = packaged_towers.importlib.util.find_spec
    missing = packaged_towers.ALL_MINILM_L6_V2.module
    monkeypatch.setattr(
        packaged_towers.importlib.util,
        "find_spec",
        lambda name, *a: None if name == missing else real_find_spec(name, *a),
    )
    why = gpu_check.why_stage_cannot_run("main_job")
    assert "small-pretrained" in why and packaged_towers.ALL_MINILM_L6_V2.install_command in why

    report = {"stages": {"data": {"status": "ok"}, "main_job": {"status": f"not run: {why}"}}, "checks": {"x": True}}
    assert gpu_check.report_ok(report) is True
    report["stages"]["ddp"] = {"status": "overrun"}
    assert gpu_check.report_ok(report) is False
    nothing_ran = {"stages": {"main_job": {"status": f"not run: {why}"}}, "checks": {}}
    assert gpu_check.report_ok(nothing_ran) is False
