"""The generate_fundus.py command line: clear errors for bad options, working outputs for good ones."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "generate_fundus.py"), *args], capture_output=True, text=True, cwd=ROOT
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-images", "0"], "--num-images must be positive"),
        (["--num-images", "-5"], "--num-images must be positive"),
        (["--splits", "train=10,validation=0"], "must have a positive number"),
        (["--num-images", "3", "--prevalence", "is_cataract=0.2"], "unknown prevalence key 'is_cataract'"),
        (["--num-images", "3", "--prevalence", "is_gc=2"], "between 0 and 1"),
        (["--num-images", "3", "--image-size", "8"], "--image-size must be between"),
        (["--num-images", "3", "--image-size", "big"], "invalid int value"),
        (["--num-images", "3", "--workers", "0"], "--workers must be between"),
        (["--splits", "train=3,validation=2", "--format", "release"], "--format release"),
        (["--num-images", "3", "--image-format", "jpeg", "--jpeg-quality", "0"], "--jpeg-quality must be 1-100"),
        (["--num-images", "3", "--image-format", "webp"], "invalid choice: 'webp'"),
    ],
)
def test_bad_options_fail_clearly(tmp_path, args, message):
    result = run("--out", str(tmp_path / "out"), *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    result = run("--out", str(blocker / "out"), "--num-images", "2")
    assert result.returncode != 0 and "is not writable" in result.stderr and "Traceback" not in result.stderr
    result = run("--out", str(blocker), "--num-images", "2")
    assert result.returncode != 0 and "not a folder" in result.stderr


def test_generates_parquet_and_contact_sheet(tmp_path):
    out = tmp_path / "out"
    sheet = tmp_path / "sheet.png"
    args = ["--out", str(out), "--splits", "train=4,validation=2", "--image-size", "64", "--rows-per-shard", "3"]
    result = run(*args, "--contact-sheet", str(sheet), "--contact-sheet-count", "4")
    assert result.returncode == 0, result.stderr
    assert '"image_size": 64' in result.stdout and "prevalence (resolved)" in result.stdout
    assert "3 shard(s) written" in result.stdout
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "train-00000-of-00002.parquet",
        "train-00001-of-00002.parquet",
        "validation-00000-of-00001.parquet",
    ]
    assert sheet.exists()
    again = run(*args, "--quiet")
    assert again.returncode == 0 and "0 shard(s) written, 3 already complete" in again.stdout
    changed = run("--out", str(out), "--splits", "train=4,validation=2", "--image-size", "64", "--seed", "1")
    assert changed.returncode == 1 and "different configuration" in changed.stderr


def test_generates_release(tmp_path):
    out = tmp_path / "release"
    result = run("--out", str(out), "--num-images", "3", "--image-size", "64", "--format", "release", "--quiet")
    assert result.returncode == 0, result.stderr
    assert (out / "metadata.csv").exists() and len(list((out / "images").glob("*.png"))) == 3
