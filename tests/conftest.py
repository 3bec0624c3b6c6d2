"""Shared fixtures: offline Hub settings, real photographs, and a tiny model saved once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from visionclip.paths import real_data_dir

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def isolated_hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private HF_HOME so remote-code module caches never leak between runs."""
    home = tmp_path_factory.mktemp("hf_home")
    os.environ["HF_HOME"] = str(home)
    return home


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
    from visionclip.presets import build_model_and_processor

    model, processor = build_model_and_processor("tiny")
    return model.eval(), processor


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory, tiny_model_and_processor) -> Path:
    """The tiny model + processor written with save_pretrained, as a Hub repository would hold them."""
    folder = tmp_path_factory.mktemp("tiny_model")
    model, processor = tiny_model_and_processor
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
