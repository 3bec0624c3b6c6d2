import numpy as np
import pytest

from visionclip.synthetic.camera import DEGRADATIONS, quality_score, sample_camera


def test_quality_score_tracks_degradation():
    rng = np.random.default_rng(0)
    good = [quality_score(sample_camera(rng)) for _ in range(200)]
    # A readable photograph always scores above the unreadable cap (4), even hazy, compressed and with a flare.
    assert min(good) >= 5 and np.median(good) >= 8
    for degradation in DEGRADATIONS:
        scores = [quality_score(sample_camera(rng, degradation)) for _ in range(50)]
        assert max(scores) <= 4, degradation
    framed = [quality_score(sample_camera(rng), disc_in_field=False) for _ in range(50)]
    assert max(framed) <= 7
    assert all(0 <= s <= 10 for s in good)


def test_degradations_are_heavy():
    rng = np.random.default_rng(1)
    for _ in range(20):  # defocus of 5 px or more, or a movement of 14 px or more
        heavy = sample_camera(rng, "heavy_blur")
        assert heavy.blur >= 5 or heavy.motion_blur >= 14
    assert sample_camera(rng, "underexposed").gain < 0.35
    assert sample_camera(rng, "overexposed").gain > 1.7
    assert sample_camera(rng, "artifact").eyelashes >= 4
    assert sample_camera(rng, "media_opacity").haze_grade == 3
    with pytest.raises(ValueError):
        sample_camera(rng, "smudge")
