"""The package data under `visionclip/data/` (presets, evaluation tasks, the knowledge base, the card templates, the
`evaluate` metric module, the Inference Endpoints handler), read through `importlib.resources` so an installed copy
finds it wherever it is installed. Nothing in the package reads a path relative to the repository.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib.resources import as_file, files
from pathlib import Path

PRESETS = "presets"
EVAL_TASKS = "eval_tasks"
KNOWLEDGE_BASE = "knowledge_base.yaml"
MODEL_CARD_TEMPLATE = "model_card.md"
DATASET_CARD_TEMPLATE = "dataset_card.md"
FUNDUS_METRIC = "metrics/fundus_classification"
ENDPOINT_HANDLER = "endpoint/handler.py"

# Data reached through a non-filesystem loader (a zip) is extracted once and kept until the process exits.
_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


def data_path(relative: str) -> Path:
    """A file or folder of the package data (`relative` to `visionclip/data`, POSIX separators) as a filesystem
    path; `FileNotFoundError` naming it when the package does not hold it."""
    resource = files(__package__).joinpath("data", *relative.split("/"))
    if not (resource.is_file() or resource.is_dir()):
        raise FileNotFoundError(f"visionclip package data {relative!r} is missing from {files(__package__)}")
    return _extracted.enter_context(as_file(resource))
