"""The label-efficiency study's runs: each starting point's image embeddings of each set, computed once and kept
(atomically, with what they were made from) so that a rerun resumes, then the learning curves of `study`."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..factory import load_model, source_kind
from ..shards import atomic_write_bytes
from ..zeroshot.data import EvalDataset
from ..zeroshot.engine import embed_images
from ..zeroshot.runner import estimate_batch_norm_statistics, random_baseline
from .study import learning_curve

# name -> what it is, in the table and the plot; the order is the table's
STARTING_POINTS = {
    "visionclip": "(a) VisionCLIP main-job model",
    "towers": "(b) same towers, no synthetic training",
    "random": "(c) random init (BN re-estimated)",
    "supervised": "(d) supervised-pretraining baseline",
}


class StaleEmbeddingsError(RuntimeError):
    """A kept embedding file was made from another model or set than this run asks for."""


@dataclass
class StartingPoint:
    name: str
    source: str  # the model folder, checkpoint, Hub id or preset it loads (for `random`: whose architecture)

    @property
    def label(self) -> str:
        return STARTING_POINTS[self.name]


def fingerprint(source: str) -> dict[str, Any]:
    """What identifies a model's weights: the source, and for a local folder its weight files' sizes and times."""
    path = Path(source)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    return {
        "source": str(path.resolve()) if path.exists() else source,
        "weights": {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in files},
    }


def set_identity(dataset: EvalDataset) -> dict[str, Any]:
    return {"name": dataset.name, "source": dataset.source, "task": dataset.task.name, "images": len(dataset.items)}


def load_starting_point(point: StartingPoint, seed: int):
    """(model in evaluation mode, processor) of a starting point."""
    if point.name == "random":
        model, processor = load_model(point.source)
        return random_baseline(model, seed), processor
    if point.name in ("visionclip", "supervised") and source_kind(point.source) == "preset":
        raise ValueError(
            f"the {point.label} must be a trained model (folder, Hub id or checkpoint), got preset {point.source!r}"
        )
    return load_model(point.source)


def embedding_file(output: Path, point: StartingPoint, dataset: EvalDataset) -> Path:
    source = hashlib.sha256(dataset.source.encode()).hexdigest()[:10]
    return output / "embeddings" / f"{point.name}__{dataset.task.name}__{source}.npz"


def read_embeddings(path: Path, identity: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The kept embeddings at `path` (None when there are none yet); `StaleEmbeddingsError` when they were made
    from another model or set."""
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as kept:
        saved = json.loads(str(kept["identity"]))
        if saved != identity:
            raise StaleEmbeddingsError(
                f"{path} holds embeddings of {saved}, not of {identity}: the model or the set changed since; "
                "delete that file (or use another --output-dir) to embed again"
            )
        return {key: kept[key] for key in ("vectors", "labels", "groups", "unreadable")}


def write_embeddings(path: Path, identity: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, identity=np.array(json.dumps(identity, sort_keys=True)), **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def embed_set(model, processor, dataset: EvalDataset, recalibrate: bool, batch_size: int) -> dict[str, np.ndarray]:
    """Vectors, class indices and groups ('' where the set has none) of the readable images, and the unreadable
    rows (`file: error`). `recalibrate`: batch-norm statistics from this set's images first (random init)."""
    if recalibrate:
        estimate_batch_norm_statistics(model, processor.image_processor, dataset.items, batch_size)
    embedded = embed_images(model, processor.image_processor, dataset.items, batch_size)
    groups = [item.group if dataset.has_groups else "" for item in embedded.items]
    return {
        "vectors": embedded.vectors.numpy().astype(np.float32),
        "labels": np.array([item.label for item in embedded.items], dtype=np.int64),
        "groups": np.array(groups, dtype=str),
        "unreadable": np.array([f"{image}: {error}" for image, error in embedded.failures], dtype=str),
    }


def embeddings_of(
    output: Path,
    points: list[StartingPoint],
    datasets: list[EvalDataset],
    seed: int,
    batch_size: int,
    report: Callable[[str], None] = print,
) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """`{(point, set name): arrays}`, read from `output/embeddings` where kept, else computed and kept."""
    found = {}
    for point in tqdm(points, desc="starting points"):
        identities = {
            d.name: {"model": fingerprint(point.source), "kind": point.name, "seed": seed, "set": set_identity(d)}
            for d in datasets
        }
        kept = {d.name: read_embeddings(embedding_file(output, point, d), identities[d.name]) for d in datasets}
        missing = [d for d in datasets if kept[d.name] is None]
        if missing:
            model, processor = load_starting_point(point, seed)
            for dataset in missing:
                report(f"embedding {dataset.name} ({len(dataset.items)} images) with {point.label}")
                kept[dataset.name] = embed_set(model, processor, dataset, point.name == "random", batch_size)
                write_embeddings(embedding_file(output, point, dataset), identities[dataset.name], kept[dataset.name])
        found.update({(point.name, name): arrays for name, arrays in kept.items()})
    return found


def run_curves(
    embeddings: dict[tuple[str, str], dict[str, np.ndarray]],
    points: list[StartingPoint],
    datasets: list[EvalDataset],
    shots: list[int | str],
    draws: int,
    seed: int,
    folds: int,
) -> list[dict[str, Any]]:
    """One row per set, starting point and number of shots (`Curve.summary` plus the names)."""
    rows = []
    for dataset in datasets:
        for point in points:
            arrays = embeddings[(point.name, dataset.name)]
            groups = arrays["groups"] if dataset.has_groups else None
            curves = learning_curve(
                arrays["vectors"], arrays["labels"], groups, list(dataset.task.labels), shots, draws, seed, folds
            )
            for curve in curves:
                rows.append({"set": dataset.name, "starting_point": point.label, **curve.summary()})
    return rows
