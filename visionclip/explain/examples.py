"""Heatmap overlays for an evaluated set (`eval_zeroshot.py --explain OUT_DIR`): a few images of each class, each
explained for the class the model predicts and, where they differ, for its true class, with the same prompt
ensembles the zero-shot evaluation scores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from image_processing_visionclip import load_fundus_image

from ..shards import atomic_write_bytes
from ..zeroshot.data import EvalDataset, EvalItem
from .loading import upscale_keywords
from .overlay import file_slug, overlay, png_bytes


@dataclass(frozen=True)
class ExampleOptions:
    per_class: int = 2
    method: str = "similarity"
    batch_size: int = 16
    upscale: int = 1  # maps from the image enlarged this many times: a finer grid (README, "Where the model looks")


def check_out_dir(out_dir: Path) -> None:
    """Make `out_dir` (and its parents), or raise `ValueError` saying why it cannot be: checked before evaluating,
    so that a bad path fails at once rather than after the evaluation."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--explain {out_dir}: exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--explain {out_dir}: cannot make the folder ({error.strerror or error})") from error


def chosen_items(dataset: EvalDataset, split: str | None, per_class: int) -> list[EvalItem]:
    """The first `per_class` readable images of each class among those of `split` (all images without a split
    column), in the dataset's order, class by class."""
    chosen = []
    for label in range(len(dataset.task.labels)):
        found = 0
        for item in dataset.subset(split):
            if found == per_class:
                break
            if item.label == label and _readable(item):
                chosen.append(item)
                found += 1
    return chosen


def _readable(item: EvalItem) -> bool:
    try:
        load_fundus_image(item.image)
    except (ValueError, OSError):
        return False
    return True


def write_examples(
    model, processor, dataset: EvalDataset, split: str | None, out_dir: Path, options: ExampleOptions
) -> list[Path]:
    """PNG overlays `out_dir/<task>/<true class>__<image>__<explained class>.png` (written atomically) for
    `chosen_items`: the map of the predicted class, captioned with its probability and the true class, and the
    map of the true class where the prediction is wrong."""
    items = chosen_items(dataset, split, options.per_class)
    if not items:
        return []
    labels = [str(label) for label in dataset.task.labels]
    images = [item.image for item in items]
    result = model.explain(
        images,
        processor,
        text=dataset.task.class_prompts(),
        method=options.method,
        batch_size=options.batch_size,
        **upscale_keywords(options.upscale),
    )
    folder = out_dir / file_slug(dataset.task.name)
    written = []
    for index, item in enumerate(items):
        photo = load_fundus_image(item.image)
        predicted, true = int(result.probs[index].argmax()), item.label
        for column in dict.fromkeys((predicted, true)):
            role = "predicted" if column == predicted else "true class"
            caption = (
                f"{options.method}: {labels[column]} ({role}) p={float(result.probs[index, column]):.2f}; "
                f"true {labels[true]}"
            )
            name = f"{file_slug(labels[true])}__{file_slug(_stem(item))}__{file_slug(labels[column])}.png"
            atomic_write_bytes(folder / name, png_bytes(overlay(photo, result.heatmaps[index][column], caption)))
            written.append(folder / name)
    return written


def _stem(item: EvalItem) -> str:
    return Path(str(item.image)).stem if isinstance(item.image, (str, Path)) else Path(item.id).stem
