"""Fixtures shared by the training tests: a small embedded dataset, a small dataset written by generate_fundus.py,
and the arguments of a short run on it."""

from __future__ import annotations

import functools
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
    from generate_fundus import main

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
