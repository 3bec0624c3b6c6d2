"""The training entry point: options are read before the training stack loads, and the run is composed in order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from accelerate import Accelerator

from visionclip.training import run
from visionclip.training.config import TrainConfig

from .conftest import SYNTHETIC

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINING_STACK = ("transformers", "accelerate", "datasets", "sklearn")


def test_options_are_read_before_the_training_stack_loads():
    script = (
        "import sys; from visionclip.training.main import main\n"
        "try:\n    main(['--batch-size', '0'])\nexcept SystemExit as stop:\n    print('exit', stop.code)\n"
        f"print(sorted(name for name in {TRAINING_STACK!r} if name in sys.modules))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300
    )
    assert "batch_size must be positive" in completed.stderr
    assert completed.stdout.split("\n")[:2] == ["exit 2", "[]"], completed.stdout + completed.stderr


def test_the_run_is_composed_in_order(cache_dir: Path, tmp_path: Path, monkeypatch):
    calls = []
    for name in ("dataset_source", "prepare_model", "build_loss", "optimizer_and_schedule", "training_stream"):
        original = getattr(run, name)
        monkeypatch.setattr(
            run, name, lambda *a, _name=name, _original=original, **k: calls.append(_name) or _original(*a, **k)
        )
    evaluator = run.HeldOutEvaluator
    monkeypatch.setattr(run, "HeldOutEvaluator", lambda *a, **k: calls.append("evaluator") or evaluator(*a, **k))
    config = TrainConfig(
        preset="tiny", **SYNTHETIC, cache_dir=str(cache_dir), batch_size=8, num_workers=0, output_dir=str(tmp_path)
    )
    trainer = run.build_trainer(config, Accelerator(cpu=True, mixed_precision="no"))
    assert calls == [
        "dataset_source",
        "prepare_model",
        "build_loss",
        "optimizer_and_schedule",
        "training_stream",
        "evaluator",
    ]
    assert trainer.stream.batch_size == 8 and len(trainer.evaluator) == SYNTHETIC["synthetic_validation"]
