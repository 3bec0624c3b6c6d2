"""The Space's bundled examples are the project's synthetic photographs, as space/make_examples.py writes them."""

from __future__ import annotations

from pathlib import Path

import make_examples
import numpy as np
from fundus_demo import fundus_problem
from PIL import Image


def test_the_committed_examples_are_what_the_generator_makes(tmp_path: Path):
    written = make_examples.write_examples(tmp_path)
    committed = sorted(make_examples.EXAMPLES.glob("*.jpg"))
    assert [path.name for path in written] == [path.name for path in committed]
    for fresh, kept in zip(written, committed, strict=True):
        difference = np.abs(np.asarray(Image.open(fresh), float) - np.asarray(Image.open(kept), float))
        assert difference.mean() < 1.0, f"{kept.name} differs from the generator's image (regenerate it)"
        assert kept.stat().st_size < 100_000 and fundus_problem(Image.open(kept).convert("RGB")) is None


def test_example_kinds_follow_the_labels():
    record = {"dr_grade": 0, "is_gc": 1, "is_abnormal": 1, "is_retinal_region_readable": 1}
    assert make_examples.example_name(record) == "glaucoma"
    assert make_examples.example_name({**record, "is_gc": 0, "dr_grade": 2}) == "diabetic_retinopathy"
    assert make_examples.example_name({**record, "is_gc": 1, "dr_grade": 2}) is None
    assert make_examples.example_name({**record, "is_gc": 0, "is_abnormal": 0}) == "normal"
