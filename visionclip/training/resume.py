"""Which checkpoint a run resumes from, and whether it may: the newest intact one (a damaged checkpoint, with
missing, truncated or altered files, is skipped with a warning), written by the same run with the same options
except the few in `RESUME_MAY_CHANGE`, by as many processes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .checkpoint import FORMAT, TRAINER_STATE, checkpoints_dir, complete_checkpoints
from .config import RESUME_MAY_CHANGE, TrainConfig
from .state_files import CheckpointError, digest, read_json

logger = logging.getLogger(__name__)


def damage(path: Path) -> str | None:
    """Why the checkpoint at `path` cannot be trusted (missing, truncated or altered files), or None."""
    try:
        sealed = read_json(path / TRAINER_STATE)
    except CheckpointError as error:
        return f"{TRAINER_STATE} unreadable ({error.__cause__})"
    files = sealed.get("files") if isinstance(sealed, dict) and sealed.get("format") == FORMAT else None
    if not isinstance(files, dict):
        return (
            f"not a format-{FORMAT} checkpoint: older ones (accelerate's pickles) are not read, as they could run code"
        )
    for name, expected in files.items():
        file = path / name
        if Path(name).name != name or not isinstance(expected, dict):
            return f"{TRAINER_STATE} lists {name!r} oddly"
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != expected.get("bytes"):
            return f"{name} has {file.stat().st_size} bytes, {expected.get('bytes')} were written"
        if digest(file)["sha256"] != expected.get("sha256"):
            return f"{name} differs from what was written (checksum)"
    return None


# what a trainer state must hold, and of which type
TRAINER_FIELDS = {"run_id": str, "step": int, "epoch": int, "nonfinite_total": int, "history": list, "config": dict}


def read_trainer_state(path: Path) -> dict[str, Any]:
    """The trainer state of the checkpoint at `path`, with every field of `TRAINER_FIELDS`."""
    state = read_json(path / TRAINER_STATE)
    wrong = [
        name
        for name, kind in TRAINER_FIELDS.items()
        if not isinstance(state, dict) or not isinstance(state.get(name), kind)
    ]
    if wrong:
        raise CheckpointError(f"{path / TRAINER_STATE}: {', '.join(wrong)} missing or of the wrong type")
    return state


def find_checkpoint(output_dir: str | Path, resume: str | None) -> Path | None:
    """The checkpoint to resume from: for `latest`, the newest intact one in `output_dir` (warning about each
    damaged one skipped; None if there is none yet); otherwise the folder `resume`, which must be intact."""
    if resume is None:
        return None
    if resume != "latest":
        path = Path(resume)
        if not (path / TRAINER_STATE).is_file():
            raise FileNotFoundError(f"--resume {resume}: not a complete checkpoint folder (no {TRAINER_STATE})")
        problem = damage(path)
        if problem:
            raise CheckpointError(f"--resume {path}: {problem}")
        return path
    found = complete_checkpoints(output_dir)
    for path in reversed(found):
        problem = damage(path)
        if problem is None:
            return path
        logger.warning("checkpoint %s is damaged (%s): trying the one before it", path, problem)
    if found:
        raise CheckpointError(
            f"no intact checkpoint in {checkpoints_dir(output_dir)} to resume from: pass --overwrite to start again"
        )
    return None


def check_resumable(trainer_state: dict[str, Any], config: TrainConfig, num_processes: int, path: Path) -> None:
    """Raise `CheckpointError` unless the run in `config` may continue the checkpoint's run."""
    differences = config.resume_differences(trainer_state["config"])
    if differences:
        raise CheckpointError(
            f"cannot resume from {path}: it belongs to a run with other options: {'; '.join(differences)}. "
            f"Only {', '.join(RESUME_MAY_CHANGE)} may change on resume; for a new run use another --output-dir "
            "or --overwrite"
        )
    if trainer_state.get("num_processes") != num_processes:
        raise CheckpointError(
            f"cannot resume from {path} with {num_processes} process(es): it was written by "
            f"{trainer_state.get('num_processes')}, and each process's data-stream position is its own"
        )


def other_runs(output_dir: str | Path, run_id: str) -> list[str]:
    """Names of the checkpoints in `output_dir` that a run other than `run_id` wrote (unreadable ones aside)."""
    names = []
    for path in complete_checkpoints(output_dir):
        try:
            owner = read_json(path / TRAINER_STATE).get("run_id")
        except (CheckpointError, AttributeError):
            continue
        if owner != run_id:
            names.append(path.name)
    return names
