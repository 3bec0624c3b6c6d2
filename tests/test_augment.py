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


@pytest.mark.parametrize("source_size", [(230, 210), (700, 640)])
def test_placing_a_crop_matches_the_processors_resize_and_pad(source_size):
    from image_processing_visionclip import VisionCLIPImageProcessor

    width, height = source_size
    yy, xx = np.mgrid[:height, :width]
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[..., 0] = (200 * (xx / width)).astype(np.uint8)  # smooth content: resamplers agree on it
    array[..., 1] = (120 * (yy / height)).astype(np.uint8)
    array[..., 2] = 40
    image = Image.fromarray(array)
    processor = VisionCLIPImageProcessor(size={"height": 96, "width": 96}, do_crop_fov=False)
    neutral = FundusAugment(
        flip_probability=0.0, max_rotation=0.0, zoom=(1.0, 1.0), brightness=0.0, contrast=0.0, saturation=0.0
    )
    placed, _ = neutral.place(image, processor.placement(*image.size), random.Random(0))
    prepared = processor.prepare_image(image)
    assert placed.size == prepared.size == (96, 96)
    difference = np.abs(np.asarray(placed, dtype=float) - np.asarray(prepared, dtype=float))
    assert difference.mean() < 1.5  # the same geometry; only the resampling filter differs
    assert tuple(np.asarray(placed)[2, 48]) == (0, 0, 0)  # the pad band above a wide image stays black
