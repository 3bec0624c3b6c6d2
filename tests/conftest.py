"""Shared fixtures: offline Hub settings, real photographs, and a tiny model saved once per session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from visionclip.paths import real_data_dir

# Set before any Hugging Face library is imported (they read these once): no Hub access, and a private HF_HOME so
# remote-code and evaluate module caches never leak between runs.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="visionclip-test-hf-")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _real_photos(dataset: str) -> list[Path]:
    folder = real_data_dir() / dataset
    labels = pd.read_csv(folder / "labels.csv")
    return [folder / file for file in labels["file"]]


@pytest.fixture(scope="session")
def real_photos() -> list[Path]:
    """Every real photograph in ../shared/data/fundus-real (HRF and CSDI)."""
    photos = _real_photos("hrf") + _real_photos("csdi")
    assert photos and all(path.is_file() for path in photos), f"real photographs missing under {real_data_dir()}"
    return photos


@pytest.fixture(scope="session")
def tiny_model_and_processor():
    from visionclip.factory import build_model

    model, processor = build_model("tiny")
    return model.eval(), processor


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory, tiny_model_and_processor) -> Path:
    """The tiny model + processor written with save_pretrained, as a Hub repository would hold them."""
    folder = tmp_path_factory.mktemp("tiny_model")
    model, processor = tiny_model_and_processor
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
