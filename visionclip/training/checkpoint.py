"""Atomic, resumable training checkpoints whose reading cannot run code.

A checkpoint is the folder `checkpoints/step_<step>`, written as `step_<step>.tmp` and renamed once complete (its
files and folder fsynced before the rename, the parent folder after it); the newest `keep` are kept. It holds

    weights.safetensors   model and loss parameters and buffers, whole (`model.` and `loss.` names)
    optimizer.pt          optimizer state dict: tensors, numbers and strings only, read with weights_only
    scheduler.json        learning-rate scheduler state
    scaler.json           fp16 gradient-scaler state, when one is in use
    rng_rank<i>.json      random generators of process i (Python, NumPy, torch CPU and accelerator)
    stream_rank<i>.json   data-stream position of process i
    trainer_state.json    written last: step, counters, run id, configuration, process count and the size and
                          SHA-256 of every other file, by which a damaged checkpoint is recognised

Only the main process writes shared files. A state holding a non-finite value is never written. Which checkpoint
to resume from, and whether a run may: `visionclip.training.resume`.
"""

from __future__ import annotations

import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from .distributed import FailureBarrier, on_main_process
from .state_files import (
    CheckpointError,
    digest,
    fsync,
    read_json,
    read_plain,
    read_tensors,
    reading,
    rng_state,
    set_rng_state,
    write_json,
    write_plain,
    write_tensors,
)

__all__ = ["CheckpointError", "TrainingState", "load_checkpoint", "save_checkpoint"]

PATTERN = re.compile(r"^step_(\d{8})$")
FORMAT = 2  # 1: accelerate's save_state (pickles), no longer read
TRAINER_STATE = "trainer_state.json"
WEIGHTS, OPTIMIZER, SCHEDULER, SCALER = "weights.safetensors", "optimizer.pt", "scheduler.json", "scaler.json"


@dataclass
class TrainingState:
    """What a checkpoint restores besides the trainer's counters."""

    modules: dict[str, torch.nn.Module]  # unwrapped modules, by the prefix of their tensors' names
    optimizer: Any  # over the parameters of `modules`
    scheduler: Any
    stream: Any  # this process's data stream (`state_dict` / `load_state_dict` of JSON values)
    scaler: Any | None = None

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every parameter and buffer, as `<prefix>.<name>`; a tensor sharing memory with an earlier one (tied
        weights) is copied, as safetensors stores no shared memory."""
        tensors, storages = {}, set()
        for prefix, module in self.modules.items():
            for name, tensor in module.state_dict().items():
                storage = tensor.untyped_storage().data_ptr()
                tensors[f"{prefix}.{name}"] = tensor.detach().clone() if storage in storages else tensor.detach()
                storages.add(storage)
        return tensors

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        unknown = sorted({name.split(".", 1)[0] for name in tensors} - set(self.modules))
        if unknown:
            raise KeyError(f"tensors of unknown modules {unknown}")
        for prefix, module in self.modules.items():
            start = len(prefix) + 1
            module.load_state_dict({n[start:]: t for n, t in tensors.items() if n.startswith(prefix + ".")})


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def checkpoints_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Finished checkpoints, oldest first (a `.tmp` folder is an interrupted write and never counts)."""
    folder = checkpoints_dir(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and PATTERN.match(p.name) and (p / TRAINER_STATE).is_file()]
    return sorted(found, key=lambda p: int(PATTERN.match(p.name).group(1)))


# ------------------------------------------------------------------------------------------------------ save
def save_checkpoint(
    accelerator: Accelerator,
    state: TrainingState,
    output_dir: str | Path,
    step: int,
    trainer_state: dict[str, Any],
    keep: int,
    failures: FailureBarrier,
) -> Path:
    """Every process calls this; returns the final checkpoint folder. Nothing is renamed, and every process raises
    (`CheckpointError`, or `ProcessFailedError` naming the failed processes), if the state holds a non-finite value
    or a process fails to write its part."""
    weights, optimizer = state.tensors(), state.optimizer.state_dict()
    poisoned = on_main_process(
        accelerator, lambda: nonfinite_names(weights) + nonfinite_names(optimizer["state"], "optimizer state")
    )
    if poisoned:
        latest = complete_checkpoints(output_dir)
        named = ", ".join(poisoned[:5]) + (f" and {len(poisoned) - 5} more" if len(poisoned) > 5 else "")
        raise CheckpointError(
            f"step {step}: the state holds non-finite values ({named}), so no checkpoint was written; the model "
            "diverged: lower --lr, or check the data. "
            + (f"The newest checkpoint, {latest[-1]}, is intact" if latest else "There is no checkpoint yet")
        )
    folder = checkpoints_dir(output_dir)
    final, temporary = folder / f"step_{step:08d}", folder / f"step_{step:08d}.tmp"
    main, rank = accelerator.is_main_process, accelerator.process_index

    def prepare() -> None:
        if main:
            _empty_folder(temporary)

    def write_parts() -> None:
        write_json(temporary / f"rng_rank{rank}.json", rng_state())
        write_json(temporary / f"stream_rank{rank}.json", state.stream.state_dict())
        if main:
            write_tensors(temporary / WEIGHTS, weights)
            write_plain(temporary / OPTIMIZER, optimizer)
            write_json(temporary / SCHEDULER, state.scheduler.state_dict())
            if state.scaler is not None and state.scaler.state_dict():
                write_json(temporary / SCALER, state.scaler.state_dict())

    def publish() -> None:
        if not main:
            return
        _seal(temporary, trainer_state, accelerator.num_processes)
        if final.exists():
            shutil.rmtree(final)
        temporary.rename(final)
        fsync(folder)
        for old in complete_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old)

    for phase in (prepare, write_parts, publish):
        with failures.guard():
            try:
                phase()
            except OSError as error:
                raise CheckpointError(f"step {step}: checkpoint not written: {error}") from error
    return final


def _empty_folder(temporary: Path) -> None:
    """Create `temporary`, removing interrupted writes beside it."""
    temporary.parent.mkdir(parents=True, exist_ok=True)
    for stale in temporary.parent.glob("*.tmp"):
        shutil.rmtree(stale)
    temporary.mkdir()


def _seal(folder: Path, trainer_state: dict[str, Any], num_processes: int) -> None:
    """Write the trainer state with the size and checksum of every other file, then fsync the folder."""
    files = {path.name: digest(path) for path in sorted(folder.iterdir())}
    sealed = {**trainer_state, "format": FORMAT, "num_processes": num_processes, "files": files}
    write_json(folder / TRAINER_STATE, sealed)
    fsync(folder)


def nonfinite_names(state: dict[Any, Any], prefix: str = "") -> list[str]:
    """Names (`prefix.key.key...`) of the floating-point tensors in a nested dict that hold NaN or infinity."""
    found = []

    def visit(value: Any, name: str) -> None:
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                found.append(name)
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(item, f"{name}.{key}" if name else str(key))

    visit(state, prefix)
    return found


# ------------------------------------------------------------------------------------------------------ load
def load_checkpoint(accelerator: Accelerator, state: TrainingState, path: Path, failures: FailureBarrier) -> None:
    """Restore `state`, this process's random generators and data-stream position from `path`. Every process
    calls this; if one fails, every process raises (`CheckpointError` naming the file, or `ProcessFailedError`)."""
    rank = accelerator.process_index
    with failures.guard():
        with reading(path / WEIGHTS):
            state.load_tensors(read_tensors(path / WEIGHTS))
        with reading(path / OPTIMIZER):
            state.optimizer.load_state_dict(read_plain(path / OPTIMIZER))
        with reading(path / SCHEDULER):
            state.scheduler.load_state_dict(read_json(path / SCHEDULER))
        if state.scaler is not None and (path / SCALER).is_file():
            with reading(path / SCALER):
                state.scaler.load_state_dict(read_json(path / SCALER))
        for name, restore in (
            (f"rng_rank{rank}.json", set_rng_state),
            (f"stream_rank{rank}.json", state.stream.load_state_dict),
        ):
            with reading(path / name):
                restore(read_json(path / name))
