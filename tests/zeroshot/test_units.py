"""Scoring per unit: a label that covers several images (an eye and its fields) is scored once."""

from __future__ import annotations

import numpy as np
import pytest

from visionclip.zeroshot.data import load_eval_dataset
from visionclip.zeroshot.runner import EvalOptions, shots_of
from visionclip.zeroshot.tasks import load_task
from visionclip.zeroshot.units import (
    average_over_units,
    check_units_keep_together,
    first_of_each_unit,
    whole_units,
)


def test_each_units_probabilities_are_the_mean_of_its_images_in_order_of_first_appearance():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.4, 0.6], [0.0, 1.0]])
    references = np.array([0, 1, 0, 1, 1])
    units = ["p1/L", "p1/R", "p1/L", "p1/R", "p2/L"]
    scored = average_over_units(probabilities, references, units, ["p1", "p1", "p1", "p1", "p2"])
    np.testing.assert_allclose(scored.probabilities, [[0.7, 0.3], [0.3, 0.7], [0.0, 1.0]])
    assert scored.references.tolist() == [0, 1, 1]
    assert scored.groups == ["p1", "p1", "p2"] and scored.images.tolist() == [2, 2, 1]
    assert average_over_units(probabilities, references, units).groups is None


def test_a_unit_whose_images_disagree_on_the_label_or_the_group_is_named():
    probabilities = np.full((2, 2), 0.5)
    with pytest.raises(ValueError, match=r"unit 'p1/L': its images have different labels \[0, 1\]"):
        average_over_units(probabilities, np.array([0, 1]), ["p1/L", "p1/L"])
    with pytest.raises(ValueError, match=r"unit 'p1/L': its images lie in different groups \['a', 'b'\]"):
        average_over_units(probabilities, np.array([0, 0]), ["p1/L", "p1/L"], ["a", "b"])
    with pytest.raises(ValueError, match="3 unit names for 2 scored images"):
        average_over_units(probabilities, np.array([0, 0]), ["a", "b", "c"])


def test_a_unit_split_across_splits_or_folds_is_refused_by_name():
    check_units_keep_together(["a", "a", "b"], ["test", "test", "fewshot"], [0, 0, 1])
    with pytest.raises(ValueError, match=r"unit 'a': its images lie in different splits or folds"):
        check_units_keep_together(["a", "a"], ["test", "fewshot"], [0, 0])
    with pytest.raises(ValueError, match=r"unit 'b': its images lie in different splits or folds"):
        check_units_keep_together(["a", "b", "b"], [None, None, None], [0, 1, 2])


def test_few_shot_by_unit_trains_on_whole_units_and_never_on_part_of_one():
    units = ["e1", "e1", "e2", "e2", "e3", "e3", "e4", "e4"]
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    candidates = np.arange(8)
    assert first_of_each_unit(candidates, units).tolist() == [0, 2, 4, 6]
    assert whole_units(np.array([2, 7]), candidates, units).tolist() == [2, 3, 6, 7]
    options = EvalOptions(shots=1, seed=3)
    train = shots_of(labels, candidates, options, units)
    chosen_units = {units[i] for i in train}
    assert len(train) == 4 and len(chosen_units) == 2  # one whole eye per class
    assert sorted(labels[train].tolist()) == [0, 0, 1, 1]
    assert len(shots_of(labels, candidates, options, None)) == 2  # per image without units


def test_unit_columns_need_a_source_with_columns(tmp_path):
    task = load_task("hrf")
    columns = {"file": "file", "label": "label", "split": "split", "fold": "fold", "unit": ("patient", "eye")}
    (tmp_path / "healthy").mkdir()
    for source in ("synthetic", str(tmp_path)):
        with pytest.raises(ValueError, match=r"unit columns \['patient', 'eye'\] need a CSV or `datasets` source"):
            load_eval_dataset(source, task, "hrf", columns)
