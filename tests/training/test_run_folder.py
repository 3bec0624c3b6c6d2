"""A run owns its output folder: another run is refused there unless told to resume or overwrite, a resumed run
must be the same run, two trainings never share a folder, and a failed start changes nothing."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from visionclip.locking import folder_lock

from .test_train import run_train

TIMEOUT = 600  # only so that a regression fails instead of hanging


def checkpoints(output: Path) -> list[str]:
    return sorted(p.name for p in (output / "checkpoints").iterdir())


def run_id(checkpoint: Path) -> str:
    return json.loads((checkpoint / "trainer_state.json").read_text())["run_id"]


def snapshot(output: Path) -> dict[str, str]:
    """Every file under `output` (but the lock's) with a digest of its bytes."""
    return {
        str(path.relative_to(output)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(output.rglob("*"))
        if path.is_file() and not path.name.startswith(".lock")
    }


def assert_refused(completed, *messages: str) -> None:
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr, completed.stderr[-3000:]
    assert "train.py: error: " in completed.stderr
    for message in messages:
        assert message in completed.stderr, completed.stderr[-3000:]


def test_a_new_run_in_the_folder_of_another_is_refused_unless_resumed_or_overwritten(short_run, tmp_path: Path):
    output = tmp_path / "run"
    first = run_train(short_run(output, "--max-steps", "8", "--save-every", "4", "--seed", "1"), timeout=TIMEOUT)
    assert first.returncode == 0, first.stderr[-3000:]
    before = snapshot(output)

    second = short_run(output, "--max-steps", "6", "--save-every", "4", "--seed", "2", "--lr", "0.002")
    assert_refused(run_train(second, timeout=TIMEOUT), f"{output} holds another run", "--resume", "--overwrite")
    assert snapshot(output) == before

    mixed = run_train([*second, "--resume", "latest"], timeout=TIMEOUT)
    assert_refused(
        mixed, "step_00000008", "seed (1 in the checkpoint, 2 now)", "lr (0.001 in the checkpoint, 0.002 now)"
    )
    assert snapshot(output) == before

    first_run = run_id(output / "checkpoints" / "step_00000008")
    replaced = run_train([*second, "--overwrite", "true"], timeout=TIMEOUT)
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    assert checkpoints(output) == ["step_00000004", "step_00000006"]
    second_run = run_id(output / "checkpoints" / "step_00000006")
    assert second_run != first_run and run_id(output / "checkpoints" / "step_00000004") == second_run
    assert "seed: 2" in (output / "training_config.yaml").read_text()

    continued = run_train([*second, "--resume", "latest", "--max-steps", "8"], timeout=TIMEOUT)
    assert continued.returncode == 0, continued.stderr[-3000:]
    assert "step_00000006 at step 6" in continued.stdout + continued.stderr
    assert checkpoints(output) == ["step_00000006", "step_00000008"]
    assert run_id(output / "checkpoints" / "step_00000008") == second_run
    exported = (output / "model" / "training_config.yaml").read_text()
    assert "seed: 2" in exported and "lr: 0.002" in exported and "max_steps: 8" in exported


def test_a_second_training_in_a_busy_folder_stops_naming_the_first(short_run, tmp_path: Path):
    output = tmp_path / "run"
    with folder_lock(output, "another training", wait=False):
        busy = run_train(short_run(output), timeout=TIMEOUT)
    assert_refused(busy, f"in use by process {os.getpid()}", "another training")
    assert not (output / "checkpoints").exists() and not (output / "training_config.yaml").exists()


SYSFS_FOLDER = Path("/sys/kernel")


def _file(path: Path) -> Path:
    path.write_text("not a folder")
    return path


def _read_only_folder(path: Path) -> Path:
    path.mkdir()
    path.chmod(0o555)
    try:
        (path / "probe").touch()
    except PermissionError:
        return path
    (path / "probe").unlink()
    return SYSFS_FOLDER  # root writes through file modes; sysfs refuses new files even to root


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_file, "exists and is not a folder"),
        (_read_only_folder, "is not a writable folder"),
    ],
    ids=["file", "read-only"],
)
def test_an_unusable_output_folder_is_named(make, message: str, short_run, tmp_path: Path):
    output = make(tmp_path / "out")
    assert_refused(run_train(short_run(output), timeout=TIMEOUT), f"output_dir {output} {message}")


def test_a_failed_start_leaves_the_previous_run_as_it_was(short_run, tmp_path: Path):
    output = tmp_path / "run"
    first = run_train(short_run(output), timeout=TIMEOUT)
    assert first.returncode == 0, first.stderr[-3000:]
    before = snapshot(output)
    for extra, message in (
        (["--resume", "latest", "--eval-split", "nope"], "'nope'"),
        (["--overwrite", "true", "--eval-split", "nope"], "'nope'"),
        (["--resume", "latest", "--preset", "small"], "preset ('tiny' in the checkpoint, 'small' now)"),
    ):
        assert_refused(run_train(short_run(output, *extra), timeout=TIMEOUT), message)
        assert snapshot(output) == before, extra


def test_resuming_a_finished_model_without_checkpoints_is_refused(tmp_path: Path):
    from visionclip.training.config import TrainConfig
    from visionclip.training.run_folder import OutputFolderError, check_claim

    (tmp_path / "model").mkdir()
    with pytest.raises(OutputFolderError, match="finished model but no checkpoint"):
        check_claim(tmp_path, TrainConfig(resume="latest"))
    check_claim(tmp_path, TrainConfig(overwrite=True))
    (tmp_path / "model").rmdir()
    (tmp_path / "training_config.yaml").write_text("preset: tiny\n")  # killed before its first checkpoint
    check_claim(tmp_path, TrainConfig(resume="latest"))
