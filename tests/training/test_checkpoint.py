"""Checkpoints: exact resume, nothing read that could run code, damaged ones skipped, non-finite ones never written,
files and folders fsynced around the rename."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from visionclip.training.checkpoint import TRAINER_STATE, complete_checkpoints
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


# ---------------------------------------------------------------------------------------- with a trained run
@pytest.fixture(scope="module")
def trained_output(short_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 4-step run with checkpoints at steps 2 and 4; without a shuffle buffer a resume is exact."""
    output = tmp_path_factory.mktemp("trained") / "run"
    completed = run_train(short_run(output, "--max-steps", "4", "--shuffle-buffer", "1"), timeout=TIMEOUT)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return output


@pytest.fixture
def output(trained_output: Path, tmp_path: Path) -> Path:
    """A copy of the trained run's folder, for one test to change."""
    return Path(shutil.copytree(trained_output, tmp_path / "run"))


@pytest.fixture
def make_trainer(short_run, output: Path):
    from accelerate import Accelerator

    from visionclip.training.config import load_config
    from visionclip.training.loop import Trainer

    def make(*extra: str) -> Trainer:
        config = load_config(short_run(output, "--max-steps", "4", "--shuffle-buffer", "1", *extra))
        return Trainer(config, Accelerator(cpu=True, mixed_precision="no"))

    return make


def step_folder(output: Path, step: int) -> Path:
    return output / "checkpoints" / f"step_{step:08d}"


def test_resuming_reproduces_the_uninterrupted_run(output: Path, make_trainer):
    uninterrupted = load_file(output / "model" / "model.safetensors")
    trainer = make_trainer("--resume", str(step_folder(output, 2)))
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


def test_a_crafted_checkpoint_cannot_run_code(output: Path, make_trainer, tmp_path: Path):
    newest = step_folder(output, 4)
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


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(output: Path, make_trainer, caplog):
    damaged = truncate_largest_file(step_folder(output, 4))
    trainer = make_trainer("--resume", "latest")
    with caplog.at_level(logging.WARNING):
        trainer.resume()
    assert trainer.step == 2
    assert "step_00000004" in caplog.text and damaged.name in caplog.text


def test_without_an_intact_checkpoint_resuming_is_an_error(output: Path, make_trainer):
    from visionclip.training.checkpoint import CheckpointError

    damaged = truncate_largest_file(step_folder(output, 4))
    with pytest.raises(CheckpointError, match=f"step_00000004.*{damaged.name}"):
        make_trainer("--resume", str(step_folder(output, 4))).resume()
    truncate_largest_file(step_folder(output, 2))
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        make_trainer("--resume", "latest").resume()


def _first_parameter(trainer) -> tuple[str, torch.Tensor]:
    return next(iter(trainer.unwrapped.named_parameters()))


def _first_float_buffer(trainer) -> tuple[str, torch.Tensor]:
    return next((n, b) for n, b in trainer.unwrapped.named_buffers() if b.is_floating_point())


def _first_moment(trainer) -> tuple[str, torch.Tensor]:
    state = next(iter(trainer.optimizer.state.values()))
    return "optimizer", state["exp_avg"]


@pytest.mark.parametrize("poisoned", [_first_parameter, _first_float_buffer, _first_moment])
def test_a_non_finite_state_is_never_saved(poisoned, output: Path, make_trainer):
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
    assert sorted(p.name for p in (output / "checkpoints").iterdir()) == ["step_00000002", "step_00000004"]


def test_checkpoint_files_and_folders_are_fsynced_around_the_rename(output: Path, make_trainer, monkeypatch):
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
    final = step_folder(output, 5).resolve()
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
