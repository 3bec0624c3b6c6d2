"""The output folder of a training run, owned by one run at a time.

A folder holds a run once any of `RUN_ENTRIES` is in it. A new run refuses such a folder unless told to continue
that run (`--resume`, which then only accepts that run's checkpoints with the same options) or to replace it
(`--overwrite`, which deletes exactly `RUN_ENTRIES`, and only once the new run's options and data have passed their
checks). While a run trains, its main process holds the folder's lock (`visionclip.locking.folder_lock`), so a
second training in the same folder stops at once, naming the first.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..locking import folder_lock
from ..shards import atomic_write_bytes
from .checkpoint import complete_checkpoints
from .config import TrainConfig
from .state_files import fsync

CONFIG_FILE = "training_config.yaml"
RUN_ENTRIES = (CONFIG_FILE, "checkpoints", "model", "model.tmp", "logs")


class OutputFolderError(RuntimeError):
    """The output folder cannot take this run; the message says why and what to do."""


def check_writable(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise OutputFolderError(f"output_dir {output} exists and is not a folder")
    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output, prefix=".write-test-"):
            pass
    except OSError as error:
        raise OutputFolderError(f"output_dir {output} is not a writable folder: {error.strerror or error}") from None


def check_claim(output: Path, config: TrainConfig) -> None:
    """Raise `OutputFolderError` if `output` holds another run that this one was not told to resume or replace."""
    held = [name for name in RUN_ENTRIES if (output / name).exists()]
    if not held or config.overwrite:
        return
    if config.resume is None:
        raise OutputFolderError(
            f"{output} holds another run ({', '.join(held)}): pass --resume latest to continue it, --overwrite true "
            "to replace it, or choose another --output-dir"
        )
    if config.resume == "latest" and not complete_checkpoints(output) and "model" in held:
        raise OutputFolderError(
            f"{output} holds a finished model but no checkpoint to resume from: pass --overwrite true to replace it "
            "or choose another --output-dir"
        )


@contextmanager
def owned_output_folder(output: Path, config: TrainConfig) -> Iterator[None]:
    """Check `output` and hold its lock for the block; raises `OutputFolderError`, or `FolderInUseError` when
    another process holds the folder."""
    check_writable(output)
    with folder_lock(output, f"train.py, {config.max_steps} steps of preset {config.preset}", wait=False):
        check_claim(output, config)
        yield


def start_run(output: Path, config: TrainConfig, resolved: str) -> None:
    """Make `output` this run's, once its checks have passed: delete the replaced run's entries (`--overwrite`),
    then save `resolved`, the configuration's YAML, atomically."""
    try:
        if config.overwrite:
            for name in RUN_ENTRIES:
                entry = output / name
                if entry.is_dir():
                    shutil.rmtree(entry)
                elif entry.exists():
                    entry.unlink()
        atomic_write_bytes(output / CONFIG_FILE, resolved.encode())
        fsync(output)
    except OSError as error:
        raise OutputFolderError(f"cannot start the run in {output}: {error}") from error
