"""The label-efficiency protocol: how well a linear probe on a model's frozen image embeddings does with k labelled
images per class, as CLIP_benchmark's few-shot linear probe measures it, over repeated random draws.

- k shots: each draw picks k training images of every class at random and tests on every image left (the rest);
  where the set has a group (patient) column, whole groups are drawn, and the test images are those of groups
  that gave no training image, so no patient is on both sides.
- `all`: each draw is a class-stratified (group-disjoint where groups exist) k-fold cross-validation with its own
  random folds: every image is tested by the probe trained on the other folds, one AUROC over all of them.
- The metric is the set's task metric of `eval_zeroshot.py`, macro one-vs-rest AUROC (the positive class's AUROC
  for two classes), from the project's metric module.
- Each number is the mean over the draws, with a 95% interval across draws: the 2.5th and 97.5th percentiles of
  the draws' AUROCs, i.e. the spread a user with that many labelled images per class should expect.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from ..zeroshot.probe import fit_predict
from ..zeroshot.report import metric

ALL = "all"


class ShotsError(ValueError):
    """A number of shots this set cannot serve (a class too small, or no test image of a class left)."""


@dataclass
class Curve:
    """One point of a learning curve: the draws' AUROCs, or why the point was skipped."""

    shots: int | str
    aurocs: list[float] = field(default_factory=list)
    skipped: str | None = None
    discarded: int = 0  # draws that left some class without a test image (k shots) or a fold without a class

    def summary(self) -> dict:
        """`{"shots", "mean", "ci_low", "ci_high", "draws", "discarded", "skipped"}`; the numbers are None when
        the point was skipped."""
        if not self.aurocs:
            return {"shots": self.shots, "mean": None, "ci_low": None, "ci_high": None, "draws": 0,
                    "discarded": self.discarded, "skipped": self.skipped}  # fmt: skip
        low, high = np.percentile(self.aurocs, [2.5, 97.5])
        return {
            "shots": self.shots,
            "mean": float(np.mean(self.aurocs)),
            "ci_low": float(low),
            "ci_high": float(high),
            "draws": len(self.aurocs),
            "discarded": self.discarded,
            "skipped": None,
        }


def macro_auroc(probs: np.ndarray, labels: np.ndarray) -> float | None:
    """The task metric of `eval_zeroshot.py`: the metric module's AUROC (macro one-vs-rest; class 1 for two)."""
    return sys.modules[type(metric()).__module__].auroc(labels, probs, probs.shape[1])


def units_of(labels: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """What is drawn whole: the group of each image, or each image on its own."""
    return np.asarray(groups) if groups is not None else np.arange(len(labels))


def check_shots(labels: np.ndarray, shots: int, class_names: list[str]) -> None:
    """Raise `ShotsError` unless every class has more than `shots` images (k to train on, one at least to test)."""
    if shots < 1:
        raise ShotsError(f"shots must be at least 1, got {shots}")
    counts = {c: int((labels == c).sum()) for c in np.unique(labels)}
    small = [f"{class_names[c]} ({n})" for c, n in counts.items() if n <= shots]
    if small:
        raise ShotsError(
            f"{shots} shots per class need more than {shots} images of every class (k to train, one to test); "
            f"too few: {', '.join(small)}"
        )


def k_shot_split(
    labels: np.ndarray, groups: np.ndarray | None, shots: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`(train, test)` indices: `shots` images of every class, drawn by whole groups in random order (a group is
    taken while it has an image of a class still short), and the images of every group not taken."""
    units = units_of(labels, groups)
    needed = {c: shots for c in np.unique(labels)}
    train, taken = [], set()
    for unit in rng.permutation(np.unique(units)):
        members = rng.permutation(np.flatnonzero(units == unit))
        useful = [m for m in members if needed[labels[m]] > 0]
        if not useful:
            continue
        taken.add(unit)
        for member in useful:
            if needed[labels[member]] > 0:
                train.append(member)
                needed[labels[member]] -= 1
        if not any(needed.values()):
            break
    test = np.flatnonzero(~np.isin(units, list(taken)))
    return np.sort(np.array(train, dtype=int)), test


def cross_validation_folds(labels: np.ndarray, groups: np.ndarray | None, folds: int, seed: int) -> np.ndarray:
    """A fold per image: class-stratified, group-disjoint where groups exist (scikit-learn's splitters)."""
    if groups is not None:
        splits = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(labels, labels, groups)
    else:
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(labels, labels)
    assigned = np.zeros(len(labels), dtype=int)
    for fold, (_, test) in enumerate(splits):
        assigned[test] = fold
    return assigned


def probe_auroc(x: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray, c: float) -> float | None:
    """Macro AUROC on `test` of a logistic-regression probe trained on `train`; None when `test` lacks a class."""
    num_classes = int(labels.max()) + 1
    if set(np.unique(labels[test])) != set(np.unique(labels)):
        return None
    probs = fit_predict(x[train], labels[train], x[test], num_classes, c)
    return macro_auroc(probs, labels[test])


def all_labels_auroc(x: np.ndarray, labels: np.ndarray, folds: np.ndarray, c: float) -> float | None:
    """Macro AUROC of out-of-fold probabilities; None when some fold's training images lack a class."""
    num_classes = int(labels.max()) + 1
    probs = np.zeros((len(labels), num_classes))
    for fold in np.unique(folds):
        test = folds == fold
        if set(np.unique(labels[~test])) != set(np.unique(labels)):
            return None
        probs[test] = fit_predict(x[~test], labels[~test], x[test], num_classes, c)
    return macro_auroc(probs, labels)


def learning_curve(
    x: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray | None,
    class_names: list[str],
    shots: list[int | str],
    draws: int,
    seed: int = 0,
    folds: int = 5,
    c: float = 1.0,
) -> list[Curve]:
    """One `Curve` per entry of `shots` (ints, or `ALL`). Labels are renumbered to the classes the set holds."""
    present, labels = np.unique(labels, return_inverse=True)
    names = [class_names[p] for p in present]
    curves = []
    for k in shots:
        curve = Curve(k)
        try:
            if k != ALL:
                check_shots(labels, int(k), names)
        except ShotsError as error:
            curve.skipped = str(error)
            curves.append(curve)
            continue
        for draw in range(draws):
            if k == ALL:
                try:
                    value = all_labels_auroc(x, labels, cross_validation_folds(labels, groups, folds, seed + draw), c)
                except ValueError as error:  # the splitter cannot make that many folds
                    curve.skipped = f"{folds}-fold cross-validation: {error}"
                    break
            else:
                train, test = k_shot_split(labels, groups, int(k), np.random.default_rng([seed, draw]))
                value = probe_auroc(x, labels, train, test, c) if len(train) == int(k) * len(names) else None
            if value is None:
                curve.discarded += 1
            else:
                curve.aurocs.append(value)
        if not curve.aurocs and curve.skipped is None:
            curve.skipped = f"every one of {draws} draws left a class without test (or training) images"
        curves.append(curve)
    return curves
