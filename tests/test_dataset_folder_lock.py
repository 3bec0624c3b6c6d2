"""Writers of one dataset folder take turns (`visionclip.locking.folder_lock`): two generator or converter processes
started on the same folder do not delete each other's temporary shards; the second waits, naming the holder, and
then finds the work done."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from visionclip.locking import folder_lock
from visionclip.synthetic.labels import resolve_prevalence
from visionclip.synthetic.writer import SampleMaker, write_release

REPO_ROOT = Path(__file__).resolve().parents[1]
GENERATE = [str(REPO_ROOT / "generate_fundus.py"), "--image-size", "64", "--num-images", "6", "--quiet"]


def generate_parquet(out: Path, source: Path) -> list[str]:
    return [*GENERATE, "--out", str(out), "--rows-per-shard", "2"]


def generate_release(out: Path, source: Path) -> list[str]:
    return [*GENERATE, "--out", str(out), "--format", "release"]


def convert(out: Path, source: Path) -> list[str]:
    return [str(REPO_ROOT / "convert_synfundus.py"), str(source), str(out), "--rows-per-shard", "2"]


def shard_rows(out: Path) -> list[int]:
    return [pq.ParquetFile(path).metadata.num_rows for path in sorted((out / "data").glob("*.parquet"))]


def waiting_message(writer: subprocess.Popen) -> str:
    """The first stderr line that says the writer waits for the folder ("" when its stderr ends without one)."""
    for line in iter(writer.stderr.readline, ""):
        if "waiting for" in line:
            return line
    return ""


@pytest.mark.parametrize("command", [generate_parquet, generate_release, convert])
def test_two_writers_of_one_folder_take_turns(tmp_path: Path, command):
    source, out = tmp_path / "release", tmp_path / "out"
    write_release(source, 6, SampleMaker(64, 3, tuple(sorted(resolve_prevalence().items()))))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with folder_lock(out, "the test, holding the folder while both writers start"):
        writers = [
            subprocess.Popen(
                [sys.executable, *command(out, source)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(2)
        ]
        for writer in writers:  # each announces that it waits (a writer that does not lock runs to its end instead)
            message = waiting_message(writer)
            assert "in use by process" in message and "holding the folder" in message, message
    outputs = [writer.communicate(timeout=300) for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], [err for _, err in outputs]
    if command is generate_release:
        assert len(list((out / "images").glob("*.png"))) == 6 and (out / "metadata.csv").is_file()
        return
    assert shard_rows(out) == [2, 2, 2]
    assert not list((out / "data").glob(".tmp-*"))
    summaries = sorted(
        tuple(map(int, found))
        for stdout, _ in outputs
        for found in re.findall(r"(\d+) shard(?:\(s\)|s) written, (\d+) already complete", stdout)
    )
    assert summaries == [(0, 3), (3, 0)], outputs  # one wrote every shard, the other waited and found them done
