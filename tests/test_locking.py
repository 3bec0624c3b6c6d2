"""Folder locks: refuse or wait with the holder named, and released when the holder dies (even by SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from visionclip.locking import HOLDER_FILE, FolderInUseError, folder_lock

REPO_ROOT = Path(__file__).resolve().parents[1]
HOLD = (
    "import sys, time; from visionclip.locking import folder_lock\n"
    "with folder_lock(sys.argv[1], 'test holder'):\n"
    "    print('held', flush=True); time.sleep(600)\n"
)


def start_holder(folder: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_holder_is_refused_with_the_holder_named(tmp_path: Path):
    holder = start_holder(tmp_path)
    try:
        with (
            pytest.raises(FolderInUseError, match=rf"in use by process {holder.pid} .*test holder"),
            folder_lock(tmp_path, "second", wait=False),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_sigkill_releases_the_lock_and_a_waiter_reports_then_proceeds(tmp_path: Path):
    holder = start_holder(tmp_path)
    messages: list[str] = []

    def report(message: str) -> None:
        messages.append(message)
        os.kill(holder.pid, signal.SIGKILL)  # the holder dies while we wait

    with folder_lock(tmp_path, "waiter", report=report, report_every=0.2):
        assert len(messages) == 1 and f"process {holder.pid} " in messages[0] and "test holder" in messages[0]
        assert '"waiter"' in (tmp_path / HOLDER_FILE).read_text()
    assert holder.wait() == -signal.SIGKILL


def test_the_lock_is_reentrant_after_release(tmp_path: Path):
    with folder_lock(tmp_path, "first", wait=False):
        pass
    with folder_lock(tmp_path, "second", wait=False):
        pass
