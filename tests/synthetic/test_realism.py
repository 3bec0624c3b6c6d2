"""The camera and framing effects that bring generated photographs closer to real ones: each happens at its stated
rate and within its stated range, shows in the pixels, and changes no label."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from visionclip.schema import CAPTIONED_COLUMNS
from visionclip.synthetic import FundusGenerator, camera, geometry
from visionclip.synthetic.camera import (
    EFFECT_RATES,
    GREEN_RIM_SHARE,
    HAZE_GRADE_SHARES,
    HAZE_SCATTER,
    HAZE_VEIL,
    RED_TO_GREEN,
    YELLOW_GREEN_SHARE,
    quality_score,
    sample_camera,
)
from visionclip.synthetic.canvas import Canvas
from visionclip.synthetic.exposure import expose
from visionclip.synthetic.geometry import FIELD_SHAPES, sample_geometry

from .conftest import only
from .test_masks import assert_masks_match_labels

DRAWS = 4000


def within_rate(hits: int, total: int, rate: float) -> bool:
    """The observed share is within 4.5 binomial standard errors of the rate (a false alarm about 1 in 10^5)."""
    error = 4.5 * np.sqrt(max(rate * (1 - rate), 1e-4) / total)
    return abs(hits / total - rate) <= error


@pytest.fixture(scope="module")
def cameras() -> list[camera.CameraSettings]:
    rng = np.random.default_rng(123)
    return [sample_camera(rng) for _ in range(DRAWS)]


def test_media_haze_grades_follow_their_shares_and_ranges(cameras):
    grades = np.array([c.haze_grade for c in cameras])
    for grade, share in enumerate(HAZE_GRADE_SHARES):
        assert within_rate(int((grades == grade).sum()), DRAWS, share), grade
    for settings in cameras:
        if settings.haze_grade:
            assert HAZE_VEIL[settings.haze_grade][0] <= settings.haze < HAZE_VEIL[settings.haze_grade][1]
            assert HAZE_SCATTER[settings.haze_grade][0] <= settings.haze_scatter < HAZE_SCATTER[settings.haze_grade][1]
        else:
            assert settings.haze == 0 and settings.haze_scatter == 0 and settings.haze_blur == 0
    dense = sample_camera(np.random.default_rng(0), "media_opacity")
    assert dense.haze_grade == 3 and dense.haze_scatter >= HAZE_SCATTER[3][0]


def test_haze_grade_sets_the_quality_score(cameras):
    """A readable photograph loses its haze grade in points (mild 1, moderate 2); dense opacity caps it at 3."""
    for settings in cameras:
        if settings.haze_grade:
            artefact = (
                settings.edge_flare > 0 or settings.flash_reflex > 0 or settings.dust > 0 or settings.eyelashes > 0
            )
            extras = int(settings.jpeg_quality is not None) + int(artefact)
            assert quality_score(settings) == 9 - settings.haze_grade - extras
    rng = np.random.default_rng(5)
    assert max(quality_score(sample_camera(rng, "media_opacity")) for _ in range(50)) <= 3


def test_colour_casts_follow_their_shares(cameras):
    for hazy, share in ((False, YELLOW_GREEN_SHARE[0]), (True, YELLOW_GREEN_SHARE[1])):
        group = [c for c in cameras if (c.haze_grade > 0) == hazy]
        assert within_rate(sum(c.colour_cast == "yellow_green" for c in group), len(group), share)
        assert within_rate(sum(c.colour_cast == "green_rim" for c in group), len(group), GREEN_RIM_SHARE)
    for settings in cameras:
        low, high = RED_TO_GREEN[settings.colour_cast]
        assert low <= settings.red_to_green <= high and (settings.red_to_green > 0) == (high > 0)
        assert (settings.rim_tint > 0) == (settings.colour_cast == "green_rim")


@pytest.mark.parametrize(
    ("effect", "value", "low", "high"),
    [
        ("motion_blur", lambda c: c.motion_blur, 3.0, 8.0),
        ("low_resolution", lambda c: 1.0 - c.capture_scale, 0.4, 0.7),
        ("edge_flare", lambda c: c.edge_flare, 0.2, 0.7),
        ("flash_reflex", lambda c: c.flash_reflex, 0.25, 0.6),
        ("illumination_tilt", lambda c: c.tilt, 0.15, 0.45),
        ("defocus", lambda c: c.blur, 0.3, 1.0),
        ("jpeg", lambda c: c.jpeg_quality or 0, 30, 86),
    ],
)
def test_camera_effects_follow_their_rates_and_ranges(cameras, effect, value, low, high):
    values = np.array([value(c) for c in cameras], dtype=np.float64)
    present = values > 0
    assert within_rate(int(present.sum()), DRAWS, EFFECT_RATES[effect]), effect
    assert (values[present] >= low).all() and (values[present] < high).all()


def test_field_shapes_follow_their_shares_and_keep_the_landmarks_in_view():
    rng = np.random.default_rng(7)
    geoms = [sample_geometry(rng, 256, ("left", "right")[i % 2]) for i in range(2000)]
    shapes = [g.shape for g in geoms]
    # A shifted or cut field that would hide a landmark is reframed as round, so shares may only move that way.
    for shape, share in FIELD_SHAPES.items():
        observed = shapes.count(shape)
        assert observed > 0, shape
        if shape != "round":
            assert observed / len(geoms) <= share + 0.05 and observed / len(geoms) >= 0.5 * share, shape
    for geom in geoms:
        assert geom.inside(*geom.disc) and geom.inside(*geom.fovea), geom.shape
    for geom in geoms:
        mask = geom.field_mask
        if geom.shape == "partial":  # the field is cut by all four borders of the frame
            assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()
        if geom.shape == "off_centre":
            assert np.hypot(geom.centre[0] - 128, geom.centre[1] - 128) > 0.03 * 256
    small = [g for g in geoms if g.shape == "small"]
    assert max(g.field_mask.mean() for g in small) < min(g.field_mask.mean() for g in geoms if g.shape == "round")


@pytest.mark.parametrize("shape", list(FIELD_SHAPES))
def test_every_field_shape_keeps_the_masks_exact(shape, monkeypatch, small_size):
    monkeypatch.setattr(geometry, "FIELD_SHAPES", {shape: 1.0})
    mixes = [only(dr_grade_3=1.0, is_dme=1.0), only(is_gc=1.0, is_rvo=1.0), only(is_amd=1.0, is_tessellated=1.0)]
    for k, prevalence in enumerate(mixes):
        generator = FundusGenerator(small_size, prevalence=prevalence, seed=40 + k, encode_png=False)
        for index in range(4):
            sample = generator.sample(index)
            assert_masks_match_labels(sample)
            assert sample.record["dr_grade"] == (3 if k == 0 else 0)


def test_camera_effects_change_no_label(monkeypatch, small_size):
    """The camera draws from its own stream: forcing every effect on changes pixels and quality, never a label or
    a mask."""
    generator = FundusGenerator(small_size, seed=3, encode_png=False)
    plain = [generator.sample(index) for index in range(12)]
    for effect in EFFECT_RATES:
        monkeypatch.setitem(EFFECT_RATES, effect, 1.0)
    monkeypatch.setattr(camera, "HAZE_GRADE_SHARES", (0.0, 0.0, 1.0))
    forced = [generator.sample(index) for index in range(12)]
    for before, after in zip(plain, forced, strict=True):
        assert [before.record[c] for c in CAPTIONED_COLUMNS] == [after.record[c] for c in CAPTIONED_COLUMNS]
        for key, mask in before.masks.items():
            assert np.array_equal(mask, after.masks[key]), key
        if after.record["is_fundus"]:
            assert after.record["media_haze"] == (3 if after.plan.degradation == "media_opacity" else 2)
            assert not np.array_equal(np.asarray(before.image), np.asarray(after.image))


def green_detail(image, field: np.ndarray) -> float:
    """Fine green-channel detail inside the field: mean absolute difference between neighbouring pixels."""
    green = np.asarray(image, dtype=np.float32)[..., 1]
    field = field & np.roll(field, 3, 1) & np.roll(field, -3, 1)  # away from the field's edge
    inside = field[:, 1:] & field[:, :-1]
    return float(np.abs(np.diff(green, axis=1))[inside].mean())


def test_haze_grades_wash_out_detail_in_order(monkeypatch):
    details = {}
    for grade in (0, 1, 2):
        shares = tuple(float(g == grade) for g in range(3))
        monkeypatch.setattr(camera, "HAZE_GRADE_SHARES", shares)
        generator = FundusGenerator(256, prevalence=only(), seed=9, encode_png=False)
        samples = [generator.sample(index) for index in range(6)]
        assert {s.record["media_haze"] for s in samples} == {grade}
        details[grade] = np.mean([green_detail(s.image, s.geometry.field_mask) for s in samples])
    assert details[0] > details[1] > details[2]


def test_media_opacity_is_an_unreadable_dense_haze(small_size):
    generator = FundusGenerator(small_size, prevalence=only(media_opacity=1.0), seed=2, encode_png=False)
    for index in range(6):
        record = generator.sample(index).record
        assert record["media_haze"] == 3 and record["retinal_region_quality_score"] <= 3
        assert record["is_retinal_region_readable"] == 0 and record["is_macular_readable"] == 0
        assert record["is_optic_disc_readable"] == 1


def clean_settings() -> camera.CameraSettings:
    """Camera settings with every optional effect off (neutral colour, no haze, blur, noise, flare, JPEG)."""
    base = sample_camera(np.random.default_rng(11))
    return replace(
        base,
        white_balance=(1.0, 1.0, 1.0),
        gain=1.0,
        gamma=1.0,
        colour_cast="neutral",
        red_to_green=0.0,
        rim_tint=0.0,
        tilt=0.0,
        haze=0.0,
        haze_grade=0,
        haze_scatter=0.0,
        haze_blur=0.0,
        blur=0.0,
        motion_blur=0.0,
        capture_scale=1.0,
        noise=0.0,
        jpeg_quality=None,
        edge_flare=0.0,
        flash_reflex=0.0,
        dust=0,
        eyelashes=0,
    )


def photograph(settings: camera.CameraSettings, size: int = 192) -> tuple[np.ndarray, geometry.FundusGeometry]:
    """A fixed orange fundus with thin dark vessel-like stripes, photographed with ``settings``."""
    geom = replace(sample_geometry(np.random.default_rng(1), size, "right"), notch_angle=None)
    canvas = Canvas(size)
    stripes = (np.arange(size) % 9 < 2)[None, :]
    for c, level in enumerate((0.75, 0.28, 0.12)):
        canvas.rgb[c] = np.where(stripes, level * 0.5, level)
    return np.asarray(expose(canvas, geom, settings, np.random.default_rng(0)), np.float32), geom


def centre_and_rim(pixels: np.ndarray, geom: geometry.FundusGeometry) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[: geom.size, : geom.size]
    rho = np.hypot(xs - geom.centre[0], ys - geom.centre[1]) / geom.radius
    return pixels[rho < 0.3].mean(0), pixels[(rho > 0.8) & (rho < 0.95)].mean(0)


def brightest_centre(pixels: np.ndarray, geom: geometry.FundusGeometry) -> float:
    ys, xs = np.mgrid[: geom.size, : geom.size]
    central = np.hypot(xs - geom.centre[0], ys - geom.centre[1]) < 0.5 * geom.radius
    return float(pixels[central].sum(1).max())


def detail(pixels: np.ndarray, geom: geometry.FundusGeometry) -> float:
    return green_detail(pixels, geom.field_mask)


@pytest.mark.parametrize(
    ("change", "shows"),
    [
        ({"motion_blur": 6.0, "motion_angle": 0.0}, lambda new, old, g: detail(new, g) < 0.8 * detail(old, g)),
        ({"capture_scale": 0.45}, lambda new, old, g: detail(new, g) < 0.9 * detail(old, g)),
        ({"blur": 0.9}, lambda new, old, g: detail(new, g) < 0.9 * detail(old, g)),
        ({"flash_reflex": 0.5}, lambda new, old, g: brightest_centre(new, g) > brightest_centre(old, g) + 40),
        (
            {"red_to_green": 0.4, "colour_cast": "yellow_green"},
            lambda new, old, g: new[g.field_mask, 1].mean() > old[g.field_mask, 1].mean() + 20,
        ),
        (
            {"rim_tint": 0.5, "colour_cast": "green_rim"},
            lambda new, old, g: (
                centre_and_rim(new, g)[1][1] > centre_and_rim(old, g)[1][1] + 5
                and np.allclose(centre_and_rim(new, g)[0], centre_and_rim(old, g)[0], atol=1)
            ),
        ),
        (
            {"tilt": 0.4, "tilt_angle": 0.0},  # darker towards +x
            lambda new, old, g: new[g.field_mask][:, 0].mean() < old[g.field_mask][:, 0].mean() - 10,
        ),
        ({"noise": 0.03}, lambda new, old, g: np.abs(new - old)[g.field_mask].mean() > 2),
        ({"jpeg_quality": 30}, lambda new, old, g: 0 < np.abs(new - old)[g.field_mask].mean() < 10),
        ({"edge_flare": 0.6}, lambda new, old, g: new[g.field_mask].max(1).mean() > old[g.field_mask].max(1).mean()),
    ],
)
def test_each_camera_effect_shows_in_the_pixels(change, shows):
    old, geom = photograph(clean_settings())
    new, _ = photograph(replace(clean_settings(), **change))
    assert shows(new, old, geom), change
    if not {"motion_blur", "capture_scale", "blur", "jpeg_quality"} & set(change):  # (these spread the rim)
        assert new[geom.field_alpha == 0].max() <= 3, change  # an added light stays inside the field
