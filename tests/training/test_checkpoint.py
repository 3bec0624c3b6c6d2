"""Checkpoints: exact resume, nothing read that could run code, damaged ones skipped, non-finite ones never written,
files and folders fsynced around the rename."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from visionclip.training.checkpoint import (
    TRAINER_STATE,
    TrainingState,
    complete_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from visionclip.training.resume import find_checkpoint

from .test_train import run_train

TIMEOUT = 600  # only so that a regression fails instead of hanging


def test_interrupted_writes_never_count_as_checkpoints(tmp_path):
    folder = tmp_path / "checkpoints"
    for name, complete in (
        ("step_00000010", True),
        ("step_00000020", True),
        ("step_00000030.tmp", True),
        ("step_00000040", False),
    ):
        (folder / name).mkdir(parents=True)
        if complete:
            (folder / name / TRAINER_STATE).write_text("{}")
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["step_00000010", "step_00000020"]
    assert find_checkpoint(tmp_path / "empty", "latest") is None
    assert find_checkpoint(tmp_path, None) is None
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        find_checkpoint(tmp_path, str(folder / "step_00000040"))


class Stream:
    """A data stream's checkpoint interface."""

    def __init__(self, state: dict):
        self.state = state

    def state_dict(self) -> dict:
        return self.state

    def load_state_dict(self, state: dict) -> None:
        self.state = state


def small_training_state(scale: float) -> TrainingState:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    loss = torch.nn.Module()
    loss.bias = torch.nn.Parameter(torch.tensor(-10.0))  # like SigLIP's
    optimizer = torch.optim.AdamW([*model.parameters(), loss.bias], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    scaler = torch.amp.GradScaler("cpu", init_scale=scale)
    scaler.scale(torch.ones(1))  # creates the scale tensor
    return TrainingState({"model": model, "loss": loss}, optimizer, scheduler, Stream({}), scaler)


def test_every_part_of_the_state_comes_back(tmp_path: Path):
    from accelerate import Accelerator

    from visionclip.training.distributed import FailureBarrier

    accelerator = Accelerator(cpu=True)
    failures = FailureBarrier(accelerator)
    saved = small_training_state(scale=128.0)
    (saved.modules["model"](torch.randn(5, 3)).sum() + saved.modules["loss"].bias).backward()
    saved.optimizer.step()
    saved.scheduler.step()
    saved.stream.state = {"epoch": 3, "worker_states": {"0": {"shard_idx": 1, "shard_example_idx": 24}}}
    trainer_state = {"run_id": "r", "step": 7, "epoch": 3, "nonfinite_total": 0, "history": [], "config": {}}
    path = save_checkpoint(accelerator, saved, tmp_path, 7, trainer_state, keep=2, failures=failures)
    draws = (torch.rand(3), random.random(), np.random.rand())

    restored = small_training_state(scale=2.0)
    load_checkpoint(accelerator, restored, path, failures)
    assert (torch.rand(3).tolist(), random.random(), np.random.rand()) == (draws[0].tolist(), *draws[1:])
    for name, module in saved.modules.items():
        torch.testing.assert_close(restored.modules[name].state_dict(), module.state_dict(), rtol=0, atol=0)
    before, after = saved.optimizer.state_dict(), restored.optimizer.state_dict()
    torch.testing.assert_close(after["state"], before["state"], rtol=0, atol=0)
    assert after["param_groups"] == before["param_groups"]
    assert restored.scheduler.state_dict() == saved.scheduler.state_dict()
    assert restored.scaler.get_scale() == 128.0
    assert restored.stream.state == saved.stream.state
    assert json.loads((path / TRAINER_STATE).read_text())["run_id"] == "r"


# ---------------------------------------------------------------------------------------- with a trained run
def step_folder(output: Path, step: int) -> Path:
    return output / "checkpoints" / f"step_{step:08d}"


def test_resuming_reproduces_the_uninterrupted_run(trained_copy: Path, make_trainer):
    uninterrupted = load_file(trained_copy / "model" / "model.safetensors")
    trainer = make_trainer("--resume", str(step_folder(trained_copy, 2)))
    trainer.resume()
    assert trainer.step == 2
    trainer.train()
    resumed = trainer.unwrapped.state_dict()
    assert set(resumed) == set(uninterrupted)
    for name, tensor in uninterrupted.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0, msg=name)


class CreatesMarker:
    """A pickle that, when unpickled, creates the file `marker` (a stand-in for any code)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def reseal(checkpoint: Path, name: str) -> None:
    """Record the new size and checksum of `name` in the checkpoint's own file list, as a forger would."""
    if name == TRAINER_STATE:
        return
    state = json.loads((checkpoint / TRAINER_STATE).read_text())
    if name in state.get("files", {}):
        data = (checkpoint / name).read_bytes()
        state["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        (checkpoint / TRAINER_STATE).write_text(json.dumps(state))


def test_a_crafted_checkpoint_cannot_run_code(trained_copy: Path, make_trainer, tmp_path: Path):
    newest = step_folder(trained_copy, 4)
    trainer = make_trainer()
    marker = tmp_path / "marker"
    names = sorted(path.name for path in newest.iterdir())
    assert len(names) > 3
    for name in names:
        crafted = tmp_path / f"crafted-{name}"
        shutil.copytree(newest, crafted)
        torch.save(CreatesMarker(marker), crafted / name)
        reseal(crafted, name)
        trainer.config.resume = str(crafted)
        try:
            trainer.resume()
        except Exception as error:  # noqa: BLE001 - the marker is checked first, the error type after
            failure = error
        else:
            failure = None
        assert not marker.exists(), f"reading a crafted {name} ran its code"
        assert type(failure).__name__ == "CheckpointError" and name in str(failure), (name, failure)


def truncate_largest_file(checkpoint: Path) -> Path:
    largest = max(checkpoint.iterdir(), key=lambda path: path.stat().st_size)
    with open(largest, "r+b") as handle:
        handle.truncate(largest.stat().st_size // 2)
    return largest


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(trained_copy: Path, make_trainer, caplog):
    damaged = truncate_largest_file(step_folder(trained_copy, 4))
    trainer = make_trainer("--resume", "latest")
    with caplog.at_level(logging.WARNING):
        trainer.resume()
    assert trainer.step == 2
    assert "step_00000004" in caplog.text and damaged.name in caplog.text


def test_without_an_intact_checkpoint_resuming_is_an_error(trained_copy: Path, make_trainer):
    from visionclip.training.checkpoint import CheckpointError

    damaged = truncate_largest_file(step_folder(trained_copy, 4))
    with pytest.raises(CheckpointError, match=f"step_00000004.*{damaged.name}"):
        make_trainer("--resume", str(step_folder(trained_copy, 4))).resume()
    truncate_largest_file(step_folder(trained_copy, 2))
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        make_trainer("--resume", "latest").resume()


def _rewrite_trainer_state(checkpoint: Path, **changes) -> None:
    state = json.loads((checkpoint / TRAINER_STATE).read_text())
    (checkpoint / TRAINER_STATE).write_text(json.dumps({**state, **changes}))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"run_id": "another"}, r"checkpoints \['step_00000002'\] belong to another run"),
        ({"num_processes": 2}, "with 1 process.*written by 2"),
        ({"step": "four"}, "step missing or of the wrong type"),
    ],
)
def test_a_checkpoint_this_run_may_not_continue_is_refused(changes, message, trained_copy: Path, make_trainer):
    from visionclip.training.checkpoint import CheckpointError

    _rewrite_trainer_state(step_folder(trained_copy, 4), **changes)  # the file list does not cover the trainer state
    with pytest.raises(CheckpointError, match=message):
        make_trainer("--resume", "latest").resume()


def _first_parameter(trainer) -> tuple[str, torch.Tensor]:
    return next(iter(trainer.unwrapped.named_parameters()))


def _first_float_buffer(trainer) -> tuple[str, torch.Tensor]:
    return next((n, b) for n, b in trainer.unwrapped.named_buffers() if b.is_floating_point())


def _first_moment(trainer) -> tuple[str, torch.Tensor]:
    state = next(iter(trainer.optimizer.state.values()))
    return "optimizer", state["exp_avg"]


@pytest.mark.parametrize("poisoned", [_first_parameter, _first_float_buffer, _first_moment])
def test_a_non_finite_state_is_never_saved(poisoned, trained_copy: Path, make_trainer):
    from visionclip.training.checkpoint import CheckpointError

    trainer = make_trainer("--resume", "latest")
    trainer.resume()
    name, tensor = poisoned(trainer)
    with torch.no_grad():
        tensor.view(-1)[0] = float("nan")
    trainer.step = 5
    with pytest.raises(CheckpointError, match="non-finite") as caught:
        trainer.save()
    assert name in str(caught.value)
    assert sorted(p.name for p in (trained_copy / "checkpoints").iterdir()) == ["step_00000002", "step_00000004"]


def test_checkpoint_files_and_folders_are_fsynced_around_the_rename(trained_copy: Path, make_trainer, monkeypatch):
    trainer = make_trainer("--resume", "latest")
    trainer.resume()
    trainer.step = 5
    events: list[tuple[str, str]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def recording(move):
        def recorded(source, target, *args, **kwargs):
            events.append(("rename", str(Path(source).resolve())))
            return move(source, target, *args, **kwargs)

        return recorded

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", recording(os.rename))
    monkeypatch.setattr(os, "replace", recording(os.replace))
    trainer.save()
    final = step_folder(trained_copy, 5).resolve()
    temporary = final.with_name(final.name + ".tmp")
    moves = [index for index, event in enumerate(events) if event == ("rename", str(temporary))]
    assert len(moves) == 1, events
    before = {path for kind, path in events[: moves[0]] if kind == "fsync"}
    after = {path for kind, path in events[moves[0] :] if kind == "fsync"}
    assert {str(temporary / path.name) for path in final.iterdir()} | {str(temporary)} <= before
    assert str(final.parent) in after


def test_non_finite_weights_never_reach_a_checkpoint(short_run, tmp_path: Path):
    output = tmp_path / "run"
    exploding = ["--lr", "1e20", "--warmup-steps", "0", "--max-steps", "12", "--max-nonfinite", "3"]
    completed = run_train(short_run(output, *exploding), timeout=TIMEOUT)
    assert completed.returncode == 2 and "Traceback" not in completed.stderr, completed.stderr[-3000:]
    assert "non-finite" in completed.stderr
    for tensors in sorted(output.glob("checkpoints/*/*.safetensors")):
        for name, tensor in load_file(tensors).items():
            assert torch.isfinite(tensor).all(), f"{tensors}: {name}"
