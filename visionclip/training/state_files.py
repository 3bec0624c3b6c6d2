"""The files of a checkpoint, in formats whose reading cannot run code: safetensors, JSON, and torch's weights-only
pickles of plain containers of tensors and numbers. Every file is fsynced once written; every failure to read one
becomes a `CheckpointError` that names it."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..shards import fsync

READ_ERRORS = (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, RuntimeError, pickle.UnpicklingError)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or read as this run needs it; the message says which and why."""


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Any failure to read `path` or to apply what it holds becomes a `CheckpointError` naming it."""
    try:
        yield
    except CheckpointError:
        raise
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: holds Python objects other than tensors and plain values; not read, as that could run code"
        ) from error
    except (*READ_ERRORS, SafetensorError) as error:
        raise CheckpointError(
            f"{path}: unreadable or not this run's state ({type(error).__name__}: {error})"
        ) from error


def write_json(path: Path, value: Any) -> None:
    try:
        data = json.dumps(value, indent=1).encode()
    except TypeError as error:
        raise CheckpointError(f"{path.name}: the state to save is not JSON ({error})") from error
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def read_json(path: Path) -> Any:
    with reading(path):
        return json.loads(path.read_bytes())


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, path)
    fsync(path)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    with reading(path):
        return load_file(path)


def write_plain(path: Path, value: Any) -> None:
    """Save nested dicts, lists, tuples, numbers, strings and tensors; `read_plain` loads nothing else."""
    torch.save(value, path)
    fsync(path)


def read_plain(path: Path) -> Any:
    with reading(path):
        return torch.load(path, map_location="cpu", weights_only=True)


def digest(path: Path) -> dict[str, Any]:
    """The size and SHA-256 of a file, against which a damaged copy is recognised."""
    sha256 = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha256.update(block)
    return {"bytes": path.stat().st_size, "sha256": sha256.hexdigest()}


def rng_state() -> dict[str, Any]:
    """This process's random generators (Python, NumPy, torch CPU and the accelerator's), as JSON values."""
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), position, has_gauss, cached],
        "torch": torch.get_rng_state().tolist(),
    }
    device = _device_rng()
    if device is not None:
        state["device"] = {"type": device[0], "states": [s.tolist() for s in device[1].get_rng_state_all()]}
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned (the accelerator's generators only on the same kind of accelerator)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    device, saved = _device_rng(), state.get("device")
    if device is not None and saved is not None and saved["type"] == device[0]:
        device[1].set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in saved["states"]])


def _device_rng() -> tuple[str, Any] | None:
    """(device type, torch module with `get_rng_state_all`) of the machine's accelerator, if any."""
    device = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    if device is None:
        return None
    module = torch.get_device_module(device.type)
    return (device.type, module) if hasattr(module, "get_rng_state_all") else None
