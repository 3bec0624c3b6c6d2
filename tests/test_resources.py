"""Package data is read through `visionclip.resources`, from the package itself, never from the repository."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import visionclip
from visionclip import resources
from visionclip.resources import data_path

PACKAGE = Path(visionclip.__file__).resolve().parent
DATA_NAMES = (
    "PRESETS",
    "EVAL_TASKS",
    "KNOWLEDGE_BASE",
    "MODEL_CARD_TEMPLATE",
    "DATASET_CARD_TEMPLATE",
    "FUNDUS_METRIC",
)


@pytest.mark.parametrize("name", DATA_NAMES)
def test_every_named_resource_is_package_data(name: str):
    path = data_path(getattr(resources, name))
    assert path.exists() and path.is_relative_to(PACKAGE / "data")


def test_folders_hold_their_files():
    assert {"tiny.yaml", "small.yaml"} <= {p.name for p in data_path(resources.PRESETS).iterdir()}
    assert "hrf.yaml" in {p.name for p in data_path(resources.EVAL_TASKS).iterdir()}
    assert (data_path(resources.FUNDUS_METRIC) / "fundus_classification.py").is_file()


def test_missing_resource_is_named():
    with pytest.raises(FileNotFoundError, match="'presets/nope.yaml'"):
        data_path("presets/nope.yaml")


def test_only_paths_locates_files_beside_the_source():
    """`__file__` beside a module means a path into the checkout: package data goes through `resources`, and only
    `paths.py` (real photographs beside a checkout, which are data, not package content) may use it."""
    users = sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if path.parent.name != "fundus_classification"
        and any(isinstance(n, ast.Name) and n.id == "__file__" for n in ast.walk(ast.parse(path.read_text())))
    )
    assert users == ["paths.py"]
