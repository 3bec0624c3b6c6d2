from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from visionclip.augment import FundusAugment


def test_neutral_augmentation_is_identity():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    augment = FundusAugment(
        flip_probability=0.0, max_rotation=0.0, zoom=(1.0, 1.0), brightness=0.0, contrast=0.0, saturation=0.0
    )
    out, flipped = augment(image, random.Random(0))
    assert not flipped
    np.testing.assert_array_equal(np.asarray(out), np.asarray(image))


def test_flip_mirrors_and_reports_it():
    array = np.zeros((16, 16, 3), dtype=np.uint8)
    array[:, :4] = 255
    augment = FundusAugment(
        flip_probability=1.0, max_rotation=0.0, zoom=(1.0, 1.0), brightness=0.0, contrast=0.0, saturation=0.0
    )
    out, flipped = augment(Image.fromarray(array), random.Random(0))
    assert flipped and np.asarray(out)[8, 14, 0] == 255 and np.asarray(out)[8, 1, 0] == 0


def test_rotation_about_the_centre_keeps_size_and_fills_black():
    image = Image.new("RGB", (40, 40), (200, 100, 50))
    augment = FundusAugment(
        flip_probability=0.0, max_rotation=45.0, zoom=(0.8, 0.8), brightness=0.0, contrast=0.0, saturation=0.0
    )
    out, _ = augment(image, random.Random(3))
    array = np.asarray(out)
    assert out.size == (40, 40)
    assert tuple(array[20, 20]) == (200, 100, 50)  # the centre stays put
    assert tuple(array[0, 0]) == (0, 0, 0)  # zooming out leaves black corners


def test_same_rng_gives_same_result_and_options_are_validated():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (24, 24, 3), dtype=np.uint8))
    augment = FundusAugment()
    a, _ = augment(image, random.Random(9))
    b, _ = augment(image, random.Random(9))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="flip_probability"):
        FundusAugment(flip_probability=1.5)
    with pytest.raises(ValueError, match="zoom"):
        FundusAugment(zoom=(1.2, 1.0))
