"""Fixtures shared by the training tests: one small embedded dataset generated once per session."""

from __future__ import annotations

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
