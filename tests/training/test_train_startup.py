"""train.py checks its data before the first step: both splits and every label column the captions need, and a
Hub dataset while offline; each problem ends the run at once with a message naming it (exit status 2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from .test_train import run_train

TIMEOUT = 600  # only so that a regression fails instead of hanging


@pytest.fixture(scope="module")
def unlabelled_dataset(fundus_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fundus dataset without its `dr_grade` and `is_gc` columns."""
    folder = tmp_path_factory.mktemp("unlabelled")
    shutil.copytree(fundus_dataset, folder, dirs_exist_ok=True)
    for shard in folder.glob("data/*.parquet"):
        pq.write_table(pq.read_table(shard).drop_columns(["dr_grade", "is_gc"]), shard)
    return folder


def assert_stopped_before_training(completed, output: Path, *messages: str) -> None:
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr, completed.stderr[-3000:]
    for message in messages:
        assert message in completed.stderr, completed.stderr[-3000:]
    assert not (output / "checkpoints").exists() and not (output / "model.tmp").exists()


def test_missing_label_columns_stop_the_run_before_the_first_step(short_run, unlabelled_dataset: Path, tmp_path):
    output = tmp_path / "run"
    completed = run_train(short_run(output, "--dataset", str(unlabelled_dataset)), timeout=TIMEOUT)
    assert_stopped_before_training(completed, output, "'train' split", "['dr_grade', 'is_gc']")


def test_a_missing_evaluation_split_stops_the_run_before_the_first_step(short_run, tmp_path: Path):
    output = tmp_path / "run"
    completed = run_train(short_run(output, "--eval-split", "nope"), timeout=TIMEOUT)
    assert_stopped_before_training(completed, output, "'nope'", "splits found: ['train', 'validation']")


def test_a_hub_dataset_while_offline_is_named(short_run, tmp_path: Path):
    output = tmp_path / "run"
    completed = run_train(short_run(output, "--dataset", "owner/name"), timeout=TIMEOUT)  # HF_HUB_OFFLINE=1
    assert_stopped_before_training(completed, output, "owner/name", "offline")
