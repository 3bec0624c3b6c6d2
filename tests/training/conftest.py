"""Fixtures shared by the training tests: a small embedded dataset, a small dataset written by generate_fundus.py,
and the arguments of a short run on it."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from visionclip.training.config import TrainConfig
from visionclip.training.data import ensure_embedded_dataset

SYNTHETIC = {"synthetic_train": 192, "synthetic_validation": 96, "synthetic_image_size": 64}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding the embedded dataset for `SYNTHETIC` (192 training and 96 held-out 64 px images)."""
    cache = tmp_path_factory.mktemp("visionclip_cache")
    ensure_embedded_dataset(TrainConfig(**SYNTHETIC, cache_dir=str(cache)), workers=1)
    return cache


@pytest.fixture(scope="session")
def fundus_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """96 training and 48 validation rows at 64 px, 4 + 2 parquet shards, from generate_fundus.py."""
    from visionclip.cli.generate import main

    folder = tmp_path_factory.mktemp("fundus_dataset")
    args = ["--out", str(folder), "--splits", "train=96,validation=48", "--image-size", "64", "--rows-per-shard", "24"]
    assert main([*args, "--quiet"]) == 0
    return folder


@pytest.fixture(scope="session")
def short_run(fundus_dataset: Path) -> Callable[..., list[str]]:
    """`short_run(output, *extra)`: train.py arguments of a 6-step tiny run on `fundus_dataset` into `output`,
    a checkpoint every 2 steps; later flags in `extra` override earlier ones."""
    return functools.partial(_short_run, fundus_dataset)


def _short_run(dataset: Path, output: Path, *extra: str) -> list[str]:
    return [
        "--preset",
        "tiny",
        "--dataset",
        str(dataset),
        "--max-steps",
        "6",
        "--batch-size",
        "8",
        "--save-every",
        "2",
        "--eval-every",
        "0",
        "--report-to",
        "none",
        "--mixed-precision",
        "no",
        "--num-workers",
        "0",
        "--warmup-steps",
        "1",
        "--shuffle-buffer",
        "16",
        "--output-dir",
        str(output),
        *extra,
    ]


@pytest.fixture(scope="session")
def trained_output(short_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 4-step run with checkpoints at steps 2 and 4; without a shuffle buffer a resume is exact."""
    from .test_train import run_train

    output = tmp_path_factory.mktemp("trained") / "run"
    # the timeout only makes a regression fail instead of hanging
    completed = run_train(short_run(output, "--max-steps", "4", "--shuffle-buffer", "1"), timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return output


@pytest.fixture
def trained_copy(trained_output: Path, tmp_path: Path) -> Path:
    """A copy of the trained run's folder, for one test to change."""
    return Path(shutil.copytree(trained_output, tmp_path / "run"))


@pytest.fixture
def make_trainer(short_run, trained_copy: Path):
    """`make_trainer(*extra)`: a Trainer in this process for `trained_copy`, options as `trained_output`'s."""
    from accelerate import Accelerator

    from visionclip.training.config import load_config
    from visionclip.training.loop import Trainer
    from visionclip.training.run import build_trainer

    def make(*extra: str) -> Trainer:
        config = load_config(short_run(trained_copy, "--max-steps", "4", "--shuffle-buffer", "1", *extra))
        return build_trainer(config, Accelerator(cpu=True, mixed_precision="no"))

    return make
