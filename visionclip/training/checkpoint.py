"""Atomic, resumable training checkpoints: write to `<step>.tmp`, then rename; keep the newest K.

A checkpoint holds what Accelerate saves (model, optimizer, scheduler, gradient scaler, every process's RNG state,
registered objects such as the loss), each process's data-stream position, and the trainer's counters.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch

PATTERN = re.compile(r"^step_(\d{8})$")
TRAINER_STATE = "trainer_state.json"


def checkpoints_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Finished checkpoints, oldest first (a `.tmp` folder is an interrupted write and never counts)."""
    folder = checkpoints_dir(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and PATTERN.match(p.name) and (p / TRAINER_STATE).is_file()]
    return sorted(found, key=lambda p: int(PATTERN.match(p.name).group(1)))


def resolve_resume(output_dir: str | Path, resume: str | None) -> Path | None:
    """`latest` -> the newest complete checkpoint (None if there is none yet); a path -> that checkpoint."""
    if resume is None:
        return None
    if resume == "latest":
        found = complete_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / TRAINER_STATE).is_file():
        raise FileNotFoundError(f"--resume {resume}: not a complete checkpoint folder (no {TRAINER_STATE})")
    return path


def save_checkpoint(
    accelerator,
    output_dir: str | Path,
    step: int,
    trainer_state: dict[str, Any],
    stream_state: dict[str, Any],
    keep: int,
) -> Path:
    """Every process calls this; returns the final checkpoint folder."""
    folder = checkpoints_dir(output_dir)
    final = folder / f"step_{step:08d}"
    temporary = folder / f"step_{step:08d}.tmp"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.tmp"):
            shutil.rmtree(stale)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary), safe_serialization=True)
    torch.save(stream_state, temporary / f"stream_rank{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (temporary / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=2))
        if final.exists():
            shutil.rmtree(final)
        temporary.rename(final)
        for old in complete_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Restore what `save_checkpoint` wrote; returns (trainer state, this process's stream state)."""
    accelerator.load_state(str(path))
    stream_file = path / f"stream_rank{accelerator.process_index}.pt"
    stream_state = torch.load(stream_file, weights_only=False) if stream_file.is_file() else None
    return json.loads((path / TRAINER_STATE).read_text()), stream_state
