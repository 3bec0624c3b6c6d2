"""`python -m visionclip.captions DATA`: the README's command prints the captions of a dataset's first records."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from visionclip.cli.generate import main as generate

ROOT = Path(__file__).resolve().parents[2]


def test_module_command_prints_one_caption_per_record(tmp_path: Path):
    assert generate(["--out", str(tmp_path / "set"), "--num-images", "4", "--image-size", "64", "--quiet"]) == 0
    done = subprocess.run(
        [sys.executable, "-m", "visionclip.captions", str(tmp_path / "set"), "--count", "3"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3 and all(line.split(": ", 1)[0].endswith(".png") for line in lines), lines
