import hashlib

import numpy as np
import pytest

from visionclip.schema import COLUMN_NAMES, derive_summary_flags, validate_record
from visionclip.synthetic import FundusGenerator

from .conftest import only


def test_same_seed_and_index_give_identical_samples(small_size):
    first = FundusGenerator(small_size, seed=3)
    second = FundusGenerator(small_size, seed=3)
    late = second.sample(9)  # a different order must not matter
    for index in (4, 9):
        a, b = first.sample(index), (late if index == 9 else second.sample(index))
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
        assert a.record == b.record
        assert a.png == b.png


def test_different_seeds_or_indices_differ(small_size):
    a = FundusGenerator(small_size, seed=1).sample(0)
    b = FundusGenerator(small_size, seed=2).sample(0)
    c = FundusGenerator(small_size, seed=1).sample(1)
    assert not np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))


def test_records_are_valid_and_complete(small_size):
    generator = FundusGenerator(small_size, seed=7)
    for index in range(60):
        sample = generator.sample(index)
        record = sample.record
        assert tuple(record) == COLUMN_NAMES
        assert validate_record(record) == [], record
        for key, value in derive_summary_flags(record).items():
            assert record[key] == value
        assert record["file_md5"] == hashlib.md5(sample.png).hexdigest()
        assert record["file_name"] == f"{index}.png"
        assert sample.image.mode == "RGB" and sample.image.size == (small_size, small_size)


def test_fast_path_skips_encoding(small_size):
    sample = FundusGenerator(small_size, seed=7, encode_png=False).sample(0)
    assert sample.png is None and sample.record["file_md5"] is None
    assert validate_record(sample.record) == []


def test_non_fundus_frames_have_no_labels(small_size):
    generator = FundusGenerator(small_size, prevalence={"not_fundus": 1.0}, seed=2)
    for index in range(6):
        record = generator.sample(index).record
        assert record["is_fundus"] == 0 and record["retinal_region_quality_score"] == 0
        assert record["is_abnormal"] == 0 and record["dr_grade"] == 0


def test_image_looks_like_a_fundus(small_size):
    sample = FundusGenerator(small_size, prevalence=only(), seed=4).sample(0)
    pixels = np.asarray(sample.image).astype(float)
    field = sample.geometry.field_mask
    ys, xs = np.mgrid[:small_size, :small_size]
    far_outside = ~sample.geometry.inside(xs, ys, margin=-4.0)
    inside, outside = pixels[field], pixels[far_outside]
    assert outside.max() < 20  # black surround
    red, green, blue = inside.mean(0)
    assert red > green > blue and red > 120  # orange-red retina


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="image_size"):
        FundusGenerator(16)
    with pytest.raises(ValueError, match="unknown prevalence key"):
        FundusGenerator(128, prevalence={"is_glaucoma": 0.2})
    with pytest.raises(ValueError, match="seed"):
        FundusGenerator(128, seed=-1)
    with pytest.raises(ValueError, match="index"):
        FundusGenerator(128).sample(-1)
