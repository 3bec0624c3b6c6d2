"""The camera's settings for one image: colour cast and white balance, exposure, illumination, graded media haze,
blur (defocus, motion, a low-resolution capture), noise, JPEG, flare and flash reflexes, and the heavy defects that
make an image unreadable (heavy blur, under- or over-exposure, eyelash shadows and dust, dense media opacity).

Each image gets a :class:`CameraSettings` (drawn from the image's camera stream, so it never changes a label);
``DEGRADATIONS`` lists the heavy degradations that the label sampler may request, and :func:`quality_score` turns
the settings into the 0-10 ``retinal_region_quality_score``. :mod:`.exposure` applies them to the painted fundus.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEGRADATIONS: tuple[str, ...] = ("heavy_blur", "underexposed", "overexposed", "artifact", "media_opacity")
# Media haze grades (cataract-like): 0 clear, 1 mild, 2 moderate (readable), 3 dense (only as `media_opacity`).
HAZE_GRADES: tuple[int, ...] = (0, 1, 2, 3)
HAZE_GRADE_SHARES: tuple[float, float, float] = (0.74, 0.16, 0.10)  # grades 0-2 of readable photographs
# Per grade: veil strength, scattered-light share and detail blur (pixels at 512) ranges.
HAZE_VEIL = {1: (0.06, 0.14), 2: (0.14, 0.26), 3: (0.3, 0.45)}
HAZE_SCATTER = {1: (0.25, 0.45), 2: (0.5, 0.7), 3: (0.75, 0.92)}
HAZE_BLUR = {1: (0.8, 1.4), 2: (1.6, 2.6), 3: (3.5, 6.0)}
# Colour casts of different cameras: neutral (HRF-like orange-red), yellow-green (CSDI-like, more often through
# haze), yellow-orange with a green-cyan periphery (Zeiss-like, MFIDDR). Part of the red reflectance recorded as
# green (`red_to_green`) makes the olive and yellow tones; the ranges per cast:
RED_TO_GREEN = {"neutral": (0.03, 0.12), "yellow_green": (0.3, 0.5), "green_rim": (0.12, 0.28)}
COLOUR_CASTS: tuple[str, ...] = ("neutral", "yellow_green", "green_rim")
YELLOW_GREEN_SHARE = (0.15, 0.5)  # clear media, hazy media
GREEN_RIM_SHARE = 0.2
EFFECT_RATES = {
    "defocus": 0.6,
    "motion_blur": 0.06,
    "low_resolution": 0.15,
    "jpeg": 0.25,
    "edge_flare": 0.18,
    "flash_reflex": 0.1,
    "illumination_tilt": 0.3,
    "dust": 0.15,
    "eyelashes": 0.04,
}


@dataclass(frozen=True)
class CameraSettings:
    """Continuous camera parameters for one image (lengths in pixels at 512 px, scaled to the image size)."""

    degradation: str | None
    gain: float
    white_balance: tuple[float, float, float]
    gamma: float
    vignette: float
    haze: float
    haze_colour: tuple[float, float, float]
    blur: float
    noise: float
    jpeg_quality: int | None
    edge_flare: float
    eyelashes: int
    dust: int
    colour_cast: str = "neutral"
    rim_tint: float = 0.0
    red_to_green: float = 0.0
    tilt: float = 0.0
    tilt_angle: float = 0.0
    haze_grade: int = 0
    haze_scatter: float = 0.0
    haze_blur: float = 0.0
    motion_blur: float = 0.0
    motion_angle: float = 0.0
    capture_scale: float = 1.0
    flare_colour: tuple[float, float, float] = (1.0, 0.95, 1.0)
    flash_reflex: float = 0.0

    @property
    def crisp(self) -> bool:
        """No blur of any kind, no JPEG, no haze: the best-looking photographs (quality 10)."""
        return (
            self.blur < 0.3
            and self.jpeg_quality is None
            and self.haze_grade == 0
            and self.haze < 0.05
            and self.motion_blur == 0
            and self.capture_scale == 1.0
        )

    @property
    def soft(self) -> bool:
        """Visibly soft from the optics or the sensor (defocus, motion, an upsampled low-resolution capture)."""
        return self.blur >= 0.7 or self.motion_blur > 0 or self.capture_scale < 0.5


def _haze_grade(rng: np.random.Generator, degradation: str | None) -> int:
    if degradation == "media_opacity":
        return 3
    return int(rng.choice(3, p=HAZE_GRADE_SHARES))


def _colour_cast(rng: np.random.Generator, haze_grade: int) -> str:
    roll = rng.random()
    yellow_green = YELLOW_GREEN_SHARE[int(haze_grade > 0)]
    if roll < yellow_green:
        return "yellow_green"
    return "green_rim" if roll < yellow_green + GREEN_RIM_SHARE else "neutral"


def _white_balance(rng: np.random.Generator, cast: str) -> tuple[float, float, float]:
    warm = rng.normal(0, 1)
    balance = np.array(
        [
            np.clip(1.0 + 0.04 * rng.normal(), 0.9, 1.1),
            np.clip(1.05 + 0.09 * rng.normal() + 0.04 * warm, 0.9, 1.4),
            np.clip(1.0 + 0.16 * rng.normal() - 0.05 * warm, 0.78, 1.6),
        ]
    )
    if cast == "yellow_green":  # less red, and red light leaking into green (see `red_to_green`): olive CSDI
        balance *= (rng.uniform(0.84, 0.94), rng.uniform(0.7, 0.85), rng.uniform(1.0, 1.4))
    return float(balance[0]), float(balance[1]), float(balance[2])


def _maybe(rng: np.random.Generator, effect: str, low: float, high: float) -> float:
    """A value in [low, high) with the effect's probability, else 0 (one draw each way, so streams stay aligned)."""
    happens = rng.random() < EFFECT_RATES[effect]
    value = float(rng.uniform(low, high))
    return value if happens else 0.0


def sample_camera(rng: np.random.Generator, degradation: str | None = None) -> CameraSettings:
    """Draw camera settings; ``degradation`` (one of :data:`DEGRADATIONS` or None) forces a heavy defect."""
    if degradation is not None and degradation not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {degradation!r}; expected one of {DEGRADATIONS}")
    haze_grade = _haze_grade(rng, degradation)
    cast = _colour_cast(rng, haze_grade)
    white_balance = _white_balance(rng, cast)
    gain = float(np.clip(rng.normal(0.98, 0.1), 0.72, 1.3))
    haze = float(rng.uniform(*HAZE_VEIL[haze_grade])) if haze_grade else 0.0
    scatter = float(rng.uniform(*HAZE_SCATTER[haze_grade])) if haze_grade else 0.0
    haze_blur = float(rng.uniform(*HAZE_BLUR[haze_grade])) if haze_grade else 0.0
    # Cataract haze is yellow to yellow-green; the veil is whiter when the media are only mildly cloudy.
    haze_colour = (1.0, float(rng.uniform(0.78, 1.0)), float(rng.uniform(0.35, 0.65)))
    blur = _maybe(rng, "defocus", 0.3, 1.0)
    motion_blur = _maybe(rng, "motion_blur", 3.0, 8.0)
    motion_angle = float(rng.uniform(0, np.pi))
    capture_scale = 1.0 - _maybe(rng, "low_resolution", 0.4, 0.7)
    noise = float(rng.uniform(0.004, 0.016)) * (1.8 if gain < 0.85 else 1.0)  # dim images: higher sensor gain
    jpeg = int(rng.integers(30, 86)) if rng.random() < EFFECT_RATES["jpeg"] else None
    flare = _maybe(rng, "edge_flare", 0.2, 0.7)
    flare_colour = ((1.0, 0.95, 1.0), (0.8, 1.0, 1.0), (1.0, 0.95, 0.45))[int(rng.integers(3))]
    flash_reflex = _maybe(rng, "flash_reflex", 0.25, 0.6)
    tilt = _maybe(rng, "illumination_tilt", 0.15, 0.45)
    tilt_angle = float(rng.uniform(0, 2 * np.pi))
    rim_tint = float(rng.uniform(0.3, 0.6)) if cast == "green_rim" else 0.0
    red_to_green = float(rng.uniform(*RED_TO_GREEN[cast]))
    eyelashes = 0
    dust = int(rng.integers(1, 5)) if rng.random() < EFFECT_RATES["dust"] else 0
    if degradation == "heavy_blur":
        blur = float(rng.uniform(5.0, 10.0))
        if rng.random() < 0.3:  # the patient or the camera moved
            motion_blur, blur = float(rng.uniform(14.0, 28.0)), 0.0
    elif degradation == "underexposed":
        gain = float(rng.uniform(0.16, 0.3))
        noise *= 1.5
    elif degradation == "overexposed":
        gain = float(rng.uniform(1.8, 2.6))
        haze = float(rng.uniform(0.3, 0.55))  # the washed-out veil of glare (not media haze)
    elif degradation == "artifact":
        eyelashes = int(rng.integers(4, 9))
        dust = int(rng.integers(3, 10))
    elif rng.random() < EFFECT_RATES["eyelashes"]:
        eyelashes = int(rng.integers(1, 3))
    return CameraSettings(
        degradation=degradation,
        gain=gain,
        white_balance=white_balance,
        gamma=float(rng.uniform(0.85, 1.15)),
        vignette=float(rng.uniform(0.35, 0.62)),
        haze=haze,
        haze_colour=haze_colour,
        blur=blur,
        noise=noise,
        jpeg_quality=jpeg,
        edge_flare=flare,
        eyelashes=eyelashes,
        dust=dust,
        colour_cast=cast,
        rim_tint=rim_tint,
        red_to_green=red_to_green,
        tilt=tilt,
        tilt_angle=tilt_angle,
        haze_grade=haze_grade,
        haze_scatter=scatter,
        haze_blur=haze_blur,
        motion_blur=motion_blur,
        motion_angle=motion_angle,
        capture_scale=capture_scale,
        flare_colour=flare_colour,
        flash_reflex=flash_reflex,
    )


def quality_score(settings: CameraSettings, *, disc_in_field: bool = True, macula_in_field: bool = True) -> int:
    """The 0-10 retinal-region quality score implied by the camera settings and framing.

    Good photographs score 9 (10 when crisp); media haze costs its grade (mild 1, moderate 2 points); otherwise
    softness (defocus, motion, a low-resolution capture) costs a point; JPEG and minor artefacts (flare, a flash
    reflex, dust, a lash) a point each; a heavy degradation caps the score at 4 (the retinal region is unreadable;
    3 for dense media opacity and exposure); a landmark outside the field caps it at 7.
    """
    score = 10 if settings.crisp else 9
    score -= settings.haze_grade if settings.haze_grade else int(settings.soft)
    score -= int(settings.jpeg_quality is not None)
    score -= int(settings.edge_flare > 0 or settings.flash_reflex > 0 or settings.dust > 0 or settings.eyelashes > 0)
    if not (disc_in_field and macula_in_field):
        score = min(score, 7)
    if settings.degradation == "heavy_blur":
        score = min(score, 2 + int(max(settings.blur, settings.motion_blur / 2) < 7.5))
    elif settings.degradation is not None:
        score = min(score, 4 - int(settings.degradation != "artifact"))
    return int(np.clip(score, 0, 10))
