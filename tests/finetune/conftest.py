"""The tiny labelled set shared by the fine-tuning tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.finetune.labelled_sets import write_set


@pytest.fixture(scope="session")
def labelled_csv(tmp_path_factory) -> Path:
    return write_set(tmp_path_factory.mktemp("labelled"))
