"""Inter-process locks on folders that say who holds them and what for.

A lock is an OS file lock (`filelock`, `flock` on POSIX) on ``<folder>/.lock``: the operating system releases it
when the holding process exits, even by SIGKILL, so a crashed job never leaves a stale lock behind. Beside it,
``<folder>/.lock.json`` records the holder (host, pid, purpose, start time) for the messages of whoever waits or
is refused. Locks are advisory: every writer of a folder must take the same lock.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_FILE = ".lock"
HOLDER_FILE = ".lock.json"


class FolderInUseError(RuntimeError):
    """Another process holds the folder's lock (and the caller asked not to wait)."""


def describe_holder(folder: str | os.PathLike) -> str:
    """Who holds (or last held) the lock of `folder`, in words."""
    try:
        holder = json.loads((Path(folder) / HOLDER_FILE).read_text())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["since"]))
        return f"process {holder['pid']} on {holder['host']} ({holder['purpose']}, since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def folder_lock(
    folder: str | os.PathLike,
    purpose: str,
    *,
    wait: bool = True,
    report_every: float = 30.0,
    report: Callable[[str], None] = _stderr,
) -> Iterator[None]:
    """Hold the lock of `folder` (created if needed) for the duration of the block.

    `wait=False` raises `FolderInUseError` naming the holder at once; `wait=True` blocks, calling `report` with
    the holder's description when it starts waiting and every `report_every` seconds after.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_FILE)
    timeout = 0.0
    while True:
        try:
            lock.acquire(timeout=timeout)
            break
        except Timeout:
            if not wait:
                raise FolderInUseError(f"{folder} is in use by {describe_holder(folder)}") from None
            report(f"waiting for {folder}: in use by {describe_holder(folder)}")
            timeout = report_every
    try:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose, "since": time.time()}
        (folder / HOLDER_FILE).write_text(json.dumps(holder))
        yield
    finally:
        lock.release()
