"""The embedded dataset: every process may ask for it; the first generates it, the others wait and reuse it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Generates the embedded dataset into argv[1]. With argv[2] == "pause", row generation stops after the first shard
# until the file argv[3] exists, so the test can start a second process while the first is mid-generation.
GENERATE = """
import logging, sys, time
from pathlib import Path
from visionclip.synthetic.writer import SampleMaker
from visionclip.training.config import TrainConfig
from visionclip.training.data import ensure_embedded_dataset

logging.basicConfig(level=logging.INFO, format="%(message)s")
if sys.argv[2] == "pause":
    make_row = SampleMaker.row

    def paused_row(self, spec, index):
        while spec.index > 0 and not Path(sys.argv[3]).exists():
            time.sleep(0.05)
        return make_row(self, spec, index)

    SampleMaker.row = paused_row
config = TrainConfig(synthetic_train=64, synthetic_validation=32, synthetic_image_size=64, cache_dir=sys.argv[1])
print("dataset at", ensure_embedded_dataset(config, workers=1), flush=True)
"""
WRITTEN = re.compile(r"embedded dataset: (\d+) shards written, (\d+) already complete")


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", GENERATE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def shards_written(stderr: str) -> tuple[int, int]:
    match = WRITTEN.search(stderr)
    assert match, stderr[-3000:]
    return int(match.group(1)), int(match.group(2))


def test_two_processes_generate_the_embedded_dataset_once(tmp_path: Path):
    cache, release = tmp_path / "cache", tmp_path / "release"
    first = start(str(cache), "pause", str(release))
    try:
        deadline = time.monotonic() + 300
        while not list(cache.glob("*/data/*.parquet")) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(cache.glob("*/data/*.parquet")), "the first process wrote no shard"
        second = start(str(cache), "run")
        waiting = ""
        while "waiting for" not in waiting and second.poll() is None:  # the lock's report names the holder
            waiting += second.stderr.readline()
        release.touch()
        first_out, first_err = first.communicate(timeout=300)
        second_out, second_err = second.communicate(timeout=300)
    finally:
        release.touch()
        for process in (first, locals().get("second")):
            if process is not None and process.poll() is None:
                process.kill()
    second_err = waiting + second_err
    assert first.returncode == 0, first_err[-3000:]
    assert second.returncode == 0, second_err[-3000:]
    assert f"waiting for {cache}" in second_err and f"in use by process {first.pid} " in second_err
    written, complete = shards_written(first_err)
    assert written > 1 and complete == 0
    assert shards_written(second_err) == (0, written), "the second process generated shards again"
    assert first_out.split()[-1] == second_out.split()[-1]
