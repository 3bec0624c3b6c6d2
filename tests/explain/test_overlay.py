"""Overlays: the heatmap over the field of view, the field's outline, the peak marked, the caption drawn."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from visionclip.explain.overlay import PEAK_COLOUR, field_of_view_mask, overlay, score_caption, tile_grid


def fundus(size=(160, 120)) -> Image.Image:
    image = Image.new("RGB", size)
    ImageDraw.Draw(image).ellipse((20, 0, 140, 120), fill=(170, 80, 40))
    return image


def peaked_map(shape, peak) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return -((yy - peak[1]) ** 2 + (xx - peak[0]) ** 2).astype(np.float32)


def test_the_peak_is_marked_where_the_map_is_highest_and_the_border_is_left_alone():
    photo = fundus()
    image = np.asarray(overlay(photo, peaked_map((120, 160), (100, 40)), max_side=1000))
    assert image.shape == (120, 160, 3)
    marked = np.argwhere((image == PEAK_COLOUR).all(axis=-1))
    assert np.abs(marked.mean(axis=0) - (40, 100)).max() <= 2
    assert (image[119, 0] == 0).all() and (image[60, 2] == 0).all()  # the dark border outside the field
    inside = field_of_view_mask(photo)
    assert not np.array_equal(image[inside], np.asarray(photo)[inside])  # the map is blended over the field


def test_pixels_the_model_never_saw_stay_as_they_were():
    photo = fundus()
    heatmap = peaked_map((120, 160), (80, 60))
    heatmap[:, :80] = np.nan
    image = np.asarray(overlay(photo, heatmap, max_side=1000))
    left = np.asarray(photo)[30:90, 40:70]
    np.testing.assert_array_equal(image[30:90, 40:70], left)


def test_large_photographs_are_drawn_smaller_with_the_caption():
    photo = fundus((1600, 1200))
    image = overlay(photo, peaked_map((1200, 1600), (800, 600)), caption=score_caption("glaucoma", 3.2, 0.61))
    assert image.size == (640, 480)
    caption_box = np.asarray(image)[2:22, 2:200]
    assert (caption_box == 0).all(axis=-1).mean() > 0.5 and (caption_box == 255).all(axis=-1).any()


def test_a_heatmap_of_another_size_is_refused():
    with pytest.raises(ValueError, match="does not match"):
        overlay(fundus(), np.zeros((10, 10), dtype=np.float32))


def test_caption_and_grid():
    assert score_caption("glaucoma", 3.214, 0.615) == "glaucoma  p=0.61  logit 3.21"
    assert score_caption("drusen", -1.0, None) == "drusen  logit -1.00"
    grid = tile_grid([fundus(), fundus((60, 90)), fundus()], columns=2, side=100)
    assert grid.size == (200, 200)
