"""The camera: illumination fall-off, white balance, exposure, haze, blur, noise, JPEG, and the artefacts that
make an image unreadable (heavy blur, under- or over-exposure, eyelash shadows, dust).

Each image gets a :class:`CameraSettings`; ``DEGRADATIONS`` lists the heavy degradations that the label sampler
may request, and :func:`quality_score` turns the settings into the 0-10 ``retinal_region_quality_score``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from .canvas import Canvas, band, ellipse, polygon
from .geometry import FundusGeometry
from .textures import random_fractal, random_pixel_noise

DEGRADATIONS: tuple[str, ...] = ("heavy_blur", "underexposed", "overexposed", "artifact")


@dataclass(frozen=True)
class CameraSettings:
    """Continuous camera parameters for one image (blur in pixels at 512 px, scaled to the image size)."""

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

    @property
    def crisp(self) -> bool:
        """No blur, JPEG or haze: the best-looking photographs (quality 10)."""
        return self.blur < 0.3 and self.jpeg_quality is None and self.haze < 0.05


def sample_camera(rng: np.random.Generator, degradation: str | None = None) -> CameraSettings:
    """Draw camera settings; ``degradation`` (one of :data:`DEGRADATIONS` or None) forces a heavy defect."""
    if degradation is not None and degradation not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {degradation!r}; expected one of {DEGRADATIONS}")
    warm = rng.normal(0, 1)
    white_balance = (
        float(np.clip(1.0 + 0.04 * rng.normal(), 0.9, 1.1)),
        float(np.clip(1.05 + 0.09 * rng.normal() + 0.04 * warm, 0.9, 1.4)),
        float(np.clip(1.0 + 0.16 * rng.normal() - 0.05 * warm, 0.78, 1.6)),
    )
    gain = float(np.clip(rng.normal(0.98, 0.07), 0.8, 1.12))
    haze = float(rng.uniform(0.04, 0.18)) if rng.random() < 0.25 else 0.0
    blur = float(rng.uniform(0.3, 1.0)) if rng.random() < 0.6 else 0.0
    noise = float(rng.uniform(0.004, 0.012))
    jpeg = int(rng.integers(40, 80)) if rng.random() < 0.2 else None
    flare = float(rng.uniform(0.2, 0.6)) if rng.random() < 0.15 else 0.0
    eyelashes = 0
    dust = int(rng.integers(1, 5)) if rng.random() < 0.15 else 0
    if degradation == "heavy_blur":
        blur = float(rng.uniform(5.0, 10.0))
    elif degradation == "underexposed":
        gain = float(rng.uniform(0.16, 0.3))
        noise *= 1.5
    elif degradation == "overexposed":
        gain = float(rng.uniform(1.8, 2.6))
        haze = float(rng.uniform(0.3, 0.55))
    elif degradation == "artifact":
        eyelashes = int(rng.integers(4, 9))
        dust = int(rng.integers(3, 10))
    elif rng.random() < 0.04:
        eyelashes = int(rng.integers(1, 3))
    haze_colour = (1.0, float(rng.uniform(0.72, 0.92)), float(rng.uniform(0.35, 0.6)))
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
    )


def quality_score(settings: CameraSettings, *, disc_in_field: bool = True, macula_in_field: bool = True) -> int:
    """The 0-10 retinal-region quality score implied by the camera settings and framing.

    Good photographs score 9 (10 when crisp); mild blur, haze or JPEG cost a point each; a heavy degradation
    caps the score at 4 (the retinal region is unreadable); a landmark outside the field caps it at 7.
    """
    score = 10 if settings.crisp else 9
    score -= int(settings.blur >= 0.7) + int(settings.haze >= 0.1) + int(settings.jpeg_quality is not None)
    score -= int(settings.edge_flare > 0 or settings.dust > 0 or settings.eyelashes > 0)
    if not (disc_in_field and macula_in_field):
        score = min(score, 7)
    if settings.degradation == "heavy_blur":
        score = min(score, 2 + int(settings.blur < 7.5))
    elif settings.degradation is not None:
        score = min(score, 4 - int(settings.degradation != "artifact"))
    return int(np.clip(score, 0, 10))


def _eyelash_shadows(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator, count: int) -> None:
    """Dark, blurred curved shadows (eyelashes, eyelid) entering the field from the top or bottom edge."""
    size = geom.size
    top = rng.random() < 0.5
    sign = 1 if top else -1
    edge_y = geom.centre[1] - sign * (geom.clip or geom.radius * geom.aspect)
    if count >= 4:  # a heavy artefact: the lid itself shades a band of the field
        depth = geom.radius * rng.uniform(0.35, 0.6)
        t = np.linspace(-1.2, 1.2, 24)
        lid = np.stack([geom.centre[0] + t * geom.radius, edge_y + sign * depth * (1 - 0.35 * t**2)], 1)
        outside = np.stack([lid[::-1, 0], np.full(24, edge_y - sign * geom.radius)], 1)
        canvas.paint("lid", polygon(np.concatenate([lid, outside])), rng.uniform(0.6, 0.85))
        canvas.absorb_layer("lid", (0.3, 0.26, 0.28), blur=size * 0.04)
    for _ in range(count):
        x = geom.centre[0] + rng.uniform(-0.8, 0.8) * geom.radius
        length = rng.uniform(0.3, 0.7) * geom.radius
        bend = rng.normal(0, 0.5)
        t = np.linspace(0, 1, 24)
        ys = edge_y + sign * (t * length - 0.1 * geom.radius)
        xs = x + bend * length * t**2
        widths = size * rng.uniform(0.03, 0.07) * (1.1 - 0.6 * t)
        canvas.paint("lashes", band(np.stack([xs, ys], 1), widths), rng.uniform(0.6, 1.0))
    canvas.absorb_layer("lashes", (0.3, 0.25, 0.28), blur=size * 0.02)


def _dust(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator, count: int) -> None:
    """Out-of-focus specks on the optics: soft dark or bright discs."""
    points = geom.sample_points(rng, count, margin=geom.radius * 0.1)
    for x, y in points:
        radius = geom.size * rng.uniform(0.006, 0.02)
        canvas.paint(
            "dust_dark" if rng.random() < 0.7 else "dust_bright", ellipse(x, y, radius), rng.uniform(0.4, 0.9)
        )
    canvas.absorb_layer("dust_dark", (0.55, 0.5, 0.5), blur=geom.size * 0.006)
    canvas.blend_layer("dust_bright", (1.0, 0.9, 0.8), blur=geom.size * 0.006, opacity=0.5)


def _radial(geom: FundusGeometry) -> np.ndarray:
    size = geom.size
    ys, xs = np.ogrid[:size, :size]
    dx = (xs.astype(np.float32) - geom.centre[0]) / geom.radius
    dy = (ys.astype(np.float32) - geom.centre[1]) / (geom.radius * geom.aspect)
    return dx * dx + dy * dy


def expose(canvas: Canvas, geom: FundusGeometry, settings: CameraSettings, rng: np.random.Generator) -> Image.Image:
    """Apply the optics and sensor to the painted fundus and return the final 8-bit RGB photograph."""
    size = geom.size
    rho2 = _radial(geom)
    if settings.eyelashes:
        _eyelash_shadows(canvas, geom, rng, settings.eyelashes)
    if settings.dust:
        _dust(canvas, geom, rng, settings.dust)
    # Illumination falls off towards the rim of the field.
    falloff = 1.0 - settings.vignette * np.clip(rho2, 0, 1.2) ** 2
    falloff *= geom.field_alpha
    gains = np.array(settings.white_balance, np.float32) * settings.gain
    haze_weight = None
    if settings.haze > 0:
        haze_weight = settings.haze * (0.6 + 0.4 * random_fractal(size, rng, coarsest=3) * 0.5 + 0.4 * rho2)
    flare = None
    if settings.edge_flare > 0:
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.ogrid[:size, :size]
        direction = np.cos(np.arctan2(ys - geom.centre[1], xs - geom.centre[0]) - angle)
        flare = settings.edge_flare * np.clip(rho2 - 0.55, 0, None) * 2.2 * np.clip(direction, 0, None) ** 3
    noise = random_pixel_noise(size, rng)
    planes = []
    for c in range(3):
        plane = canvas.rgb[c]
        plane *= falloff * gains[c]
        if haze_weight is not None:
            plane += haze_weight * (settings.haze_colour[c] * settings.gain - plane) * geom.field_alpha
        if flare is not None:
            plane += np.clip(flare, 0, 1) * ((1.0, 0.95, 1.0)[c] - plane) * geom.field_alpha
        plane += noise[..., c] * (settings.noise * geom.field_alpha)
        plane *= 255.0
        np.clip(plane, 0, 255, out=plane)
        planes.append(Image.fromarray(plane.astype(np.uint8)))
    image = Image.merge("RGB", planes)
    if abs(settings.gamma - 1.0) > 0.02:
        table = (255.0 * (np.arange(256) / 255.0) ** settings.gamma).round().astype(np.uint8).tolist()
        image = image.point(table * 3)
    scale = size / 512.0
    if settings.blur >= 1.5:
        image = image.filter(ImageFilter.GaussianBlur(settings.blur * scale))
    elif settings.blur > 0:
        image = image.filter(ImageFilter.BoxBlur(settings.blur * scale))
    if settings.jpeg_quality is not None:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=settings.jpeg_quality)
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return image
