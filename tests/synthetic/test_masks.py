import numpy as np
import pytest

from visionclip.schema import FINDING_COLUMNS
from visionclip.synthetic import MASK_KEYS, FundusGenerator

from .conftest import only


def assert_masks_match_labels(sample):
    masks = sample.masks
    assert set(masks) == set(MASK_KEYS)
    for key in MASK_KEYS:
        positive = sample.record[key] > 0
        mask = masks[key]
        assert mask.dtype == bool and mask.shape == sample.image.size[::-1]
        assert mask.any() == positive, (sample.index, key, sample.record[key], int(mask.sum()))


def test_masks_match_labels_on_the_default_mix(small_size):
    generator = FundusGenerator(small_size, seed=21, encode_png=False)
    for index in range(220):
        assert_masks_match_labels(generator.sample(index))


@pytest.mark.parametrize("forced", [*FINDING_COLUMNS, "dr_grade_1", "dr_grade_2", "dr_grade_3", "dr_grade_4"])
def test_masks_match_forced_positive_labels(forced, small_size):
    generator = FundusGenerator(small_size, prevalence=only(**{forced: 1.0}), seed=8, encode_png=False)
    key = "dr_grade" if forced.startswith("dr_grade") else forced
    for index in range(10):
        sample = generator.sample(index)
        assert sample.record[key] > 0
        assert_masks_match_labels(sample)


def test_masks_with_degradations_and_framing(small_size):
    prevalence = {
        "heavy_blur": 0.2,
        "underexposed": 0.2,
        "overexposed": 0.2,
        "artifact": 0.2,
        "media_opacity": 0.2,
        "disc_out_of_field": 0.3,
        "macula_out_of_field": 0.3,
        "not_fundus": 0.1,
        "healthy": 0.0,
    }
    generator = FundusGenerator(small_size, prevalence=prevalence, seed=13, encode_png=False)
    for index in range(60):
        assert_masks_match_labels(generator.sample(index))


def test_lesion_masks_name_the_drawn_features(small_size):
    sample = FundusGenerator(small_size, prevalence=only(dr_grade_3=1.0), seed=1, encode_png=False).sample(0)
    names = set(sample.lesion_masks)
    assert any(name.startswith("dr_grade/") for name in names)
    union = np.zeros_like(sample.masks["dr_grade"])
    for name in names:
        if name.startswith("dr_grade/"):
            union |= sample.lesion_masks[name]
    assert np.array_equal(union, sample.masks["dr_grade"])
