"""The pointing game and pixel AUROC: hits, tolerance, the field of view, and the centre-bias map."""

from __future__ import annotations

import numpy as np
import pytest

from visionclip.explain.pointing import Tally, centre_bias_map, peak, pixel_auroc, pointing_hit


def blob(shape, centre, radius) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


FIELD = blob((40, 40), (20, 20), 19)


def test_a_hit_needs_the_peak_on_the_lesion_or_within_the_tolerance():
    lesion = blob((40, 40), (10, 20), 2)
    heatmap = np.zeros((40, 40), dtype=np.float32)
    heatmap[10, 20] = 1.0
    assert pointing_hit(heatmap, lesion, FIELD)
    heatmap[10, 20], heatmap[10, 26] = 0.0, 1.0  # 4 px beyond the lesion's edge
    assert not pointing_hit(heatmap, lesion, FIELD, tolerance=3)
    assert pointing_hit(heatmap, lesion, FIELD, tolerance=4)


def test_the_peak_is_taken_inside_the_field_and_unseen_pixels_rank_lowest():
    heatmap = np.zeros((40, 40), dtype=np.float32)
    heatmap[0, 0] = 5.0  # outside the field
    heatmap[20, 30] = 1.0
    heatmap[25, 25] = np.nan
    assert peak(heatmap, FIELD) == (20, 30)
    lesion = blob((40, 40), (25, 25), 1)
    assert pixel_auroc(heatmap, lesion, FIELD) < 0.5


def test_pixel_auroc_ranks_the_lesion_and_is_undefined_without_both_kinds_of_pixel():
    lesion = blob((40, 40), (15, 15), 4)
    assert pixel_auroc(lesion.astype(np.float32), lesion, FIELD) == 1.0
    assert pixel_auroc(-lesion.astype(np.float32), lesion, FIELD) == 0.0
    assert pixel_auroc(np.zeros((40, 40)), np.zeros((40, 40), dtype=bool), FIELD) is None


def test_centre_bias_peaks_at_the_fields_centroid_not_the_images_centre():
    field = blob((40, 60), (20, 40), 15)
    assert peak(centre_bias_map(field), field) == (20, 40)


def test_tally_summary():
    tally = Tally()
    lesion = blob((40, 40), (10, 20), 2)
    tally.add(lesion.astype(np.float32), lesion, FIELD, 0)
    tally.add(centre_bias_map(FIELD), lesion, FIELD, 0)
    summary = tally.summary()
    assert summary["pointing"] == 0.5 and summary["images"] == 2 and summary["flat_maps"] == 0
    assert summary["pixel_auroc"] == pytest.approx((1.0 + pixel_auroc(centre_bias_map(FIELD), lesion, FIELD)) / 2)


def test_a_flat_map_points_nowhere():
    lesion = blob((40, 40), (20, 20), 3)  # at the centre, where a tie broken by position could land
    tally = Tally()
    tally.add(np.full((40, 40), 0.3, dtype=np.float32), lesion, FIELD, tolerance=40)
    assert tally.summary() == {"pointing": 0.0, "pixel_auroc": 0.5, "images": 1, "flat_maps": 1}
