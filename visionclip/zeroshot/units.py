"""Scoring per unit where a label covers several images (an eye's DR grade over its four fields): each unit's
images' class probabilities are averaged and the unit is scored once, as multi-field screening grades an eye."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class UnitScores:
    """Per unit: mean class probabilities `(units, classes)`, the label, the group (None without groups) and how
    many images each unit had."""

    probabilities: np.ndarray
    references: np.ndarray
    groups: list[str] | None
    images: np.ndarray


def average_over_units(
    probabilities: np.ndarray, references: np.ndarray, units: list[str], groups: list[str] | None = None
) -> UnitScores:
    """Average the rows of each unit (in order of first appearance); a unit whose images carry different labels,
    or lie in different groups, is an error that names it."""
    if len(units) != len(probabilities):
        raise ValueError(f"{len(units)} unit names for {len(probabilities)} scored images")
    order = list(dict.fromkeys(units))
    index = {unit: position for position, unit in enumerate(order)}
    rows = np.array([index[unit] for unit in units])
    labels, unit_groups = [], []
    for position, unit in enumerate(order):
        members = np.flatnonzero(rows == position)
        member_labels = set(references[members].tolist())
        if len(member_labels) > 1:
            raise ValueError(f"unit {unit!r}: its images have different labels {sorted(member_labels)}")
        labels.append(references[members[0]])
        if groups is not None:
            member_groups = {groups[i] for i in members}
            if len(member_groups) > 1:
                raise ValueError(f"unit {unit!r}: its images lie in different groups {sorted(member_groups)}")
            unit_groups.append(groups[members[0]])
    counts = np.bincount(rows, minlength=len(order))
    sums = np.zeros((len(order), probabilities.shape[1]))
    np.add.at(sums, rows, probabilities)
    return UnitScores(sums / counts[:, None], np.array(labels), unit_groups if groups is not None else None, counts)


def check_units_keep_together(units: list[str], splits: list[str | None], folds: list[int | None]) -> None:
    """A unit's images must share their split and their fold: otherwise a probe could train on some of a unit's
    images and be scored on the rest of it. Raises naming the first unit that does not."""
    seen: dict[str, tuple[str | None, int | None]] = {}
    for unit, split, fold in zip(units, splits, folds, strict=True):
        first = seen.setdefault(unit, (split, fold))
        if first != (split, fold):
            raise ValueError(
                f"unit {unit!r}: its images lie in different splits or folds ({first} and {(split, fold)}); "
                "a unit must keep together"
            )


def first_of_each_unit(candidates: np.ndarray, units: list[str]) -> np.ndarray:
    """The first of `candidates` (image indices) of each unit among them: what few-shot draws from by unit."""
    firsts: dict[str, int] = {}
    for index in candidates.tolist():
        firsts.setdefault(units[index], index)
    return np.array(sorted(firsts.values()), dtype=int)


def whole_units(chosen: np.ndarray, candidates: np.ndarray, units: list[str]) -> np.ndarray:
    """Every candidate image of the units that `chosen` images belong to."""
    wanted = {units[index] for index in chosen.tolist()}
    return np.array([index for index in candidates.tolist() if units[index] in wanted], dtype=int)
