"""Scoring per unit: a label that covers several images (an eye and its fields) is scored once."""

from __future__ import annotations

import numpy as np
import pytest

from visionclip.zeroshot.units import average_over_units


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
