"""The labelled images a fine-tuning run learns from: read once into memory (unreadable rows reported, not fatal),
the classes the data holds, and the cross-validation folds (a fold column, or folds that keep every group, i.e.
patient, on one side), each checked before anything is trained."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from ..zeroshot.data import EvalDataset, EvalItem
from ..zeroshot.engine import _item_name


@dataclass
class LabelledImages:
    """Prepared uint8 images `(H, W, 3)` and their class indices into `classes` (the task's classes that the data
    holds, in the task's order), with the rows that could not be read."""

    images: list[np.ndarray]
    labels: np.ndarray
    classes: list[str]
    items: list[EvalItem]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def groups(self) -> np.ndarray | None:
        groups = [item.group for item in self.items]
        return None if any(group is None for group in groups) else np.array(groups)

    @property
    def folds(self) -> np.ndarray | None:
        folds = [item.fold for item in self.items]
        return None if any(fold is None for fold in folds) else np.array(folds)


def read_images(dataset: EvalDataset, image_processor) -> LabelledImages:
    """Every readable image of `dataset` prepared at the model's input size (field-of-view crop, resize, pad);
    the unreadable or missing ones are listed in `skipped` with their error. `ValueError` when fewer than two
    classes remain."""
    images, kept, skipped = [], [], []
    for item in dataset.items:
        try:
            images.append(np.asarray(image_processor.prepare_image(item.image)))
            kept.append(item)
        except (ValueError, OSError) as error:
            skipped.append((_item_name(item), str(error)))
    if not kept:
        raise ValueError(f"{dataset.name}: none of the {len(dataset.items)} images could be read")
    present = sorted({item.label for item in kept})
    if len(present) < 2:
        only = dataset.task.labels[present[0]]
        raise ValueError(f"{dataset.name}: every readable image is of class {only!r}; a classifier needs two classes")
    classes = [dataset.task.labels[index] for index in present]
    labels = np.array([present.index(item.label) for item in kept])
    return LabelledImages(images, labels, classes, kept, skipped)


def assign_folds(data: LabelledImages, num_folds: int, seed: int, by: str) -> np.ndarray:
    """Fold number of every image: `by` is `fold` (the dataset's fold column), `group` (class-stratified folds
    with every group in one fold only) or `stratified` (class-stratified folds of images). Raises `ValueError`
    naming the problem when the folds cannot measure every class."""
    if by == "fold":
        if data.folds is None:
            raise ValueError("--cv-by fold: the dataset has no fold value for every image")
        folds = data.folds
    else:
        folds = _generated_folds(data, num_folds, seed, by)
    check_folds(folds, data.labels, data.classes)
    return folds


def _generated_folds(data: LabelledImages, num_folds: int, seed: int, by: str) -> np.ndarray:
    if num_folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {num_folds}")
    if by == "group":
        groups = data.groups
        if groups is None:
            raise ValueError("--cv-by group: the dataset has no group (patient) value for every image")
        distinct = np.unique(groups)
        if len(distinct) < num_folds:
            where = (
                f"every image in the one group {str(distinct[0])!r}"
                if len(distinct) == 1
                else f"{len(distinct)} groups"
            )
            raise ValueError(
                f"the group column puts {where}: {num_folds} group-disjoint folds need at least {num_folds} groups"
            )
    counts = np.bincount(data.labels, minlength=len(data.classes))
    small = [f"{data.classes[c]} ({counts[c]})" for c in range(len(data.classes)) if counts[c] < num_folds]
    if small:
        raise ValueError(
            f"{num_folds} folds need at least {num_folds} images of every class; too few: {', '.join(small)} "
            "(use fewer --folds)"
        )
    folds = np.zeros(len(data), dtype=int)
    if by == "group":
        splitter = StratifiedGroupKFold(num_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(data)), data.labels, groups)
    else:
        splits = StratifiedKFold(num_folds, shuffle=True, random_state=seed).split(np.zeros(len(data)), data.labels)
    for fold, (_, test) in enumerate(splits):
        folds[test] = fold
    return folds


def check_folds(folds: np.ndarray, labels: np.ndarray, classes: list[str]) -> None:
    """Every fold's test images must be of classes the other folds train on."""
    for fold in np.unique(folds):
        unseen = sorted(set(labels[folds == fold]) - set(labels[folds != fold]))
        if unseen:
            names = ", ".join(repr(classes[c]) for c in unseen)
            raise ValueError(
                f"fold {fold} tests class {names}, which never appears in the training images of the other folds"
            )


def inner_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices `(train, validation)`: a class-stratified `fraction` for early stopping; no validation images (an
    empty array) when `fraction` is 0 or a class has fewer than two images to split."""
    everything = np.arange(len(labels))
    counts = np.bincount(labels)
    if fraction <= 0 or counts[counts > 0].min() < 2:
        return everything, everything[:0]
    rng = np.random.default_rng(seed)
    validation = []
    for label in np.unique(labels):
        members = rng.permutation(everything[labels == label])
        validation += members[: max(1, min(len(members) - 1, round(fraction * len(members))))].tolist()
    validation = np.sort(np.array(validation))
    return np.setdiff1d(everything, validation), validation
