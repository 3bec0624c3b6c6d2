"""Taking the photograph: the optics and the sensor applied to the painted fundus, as :class:`CameraSettings` say.

Order: artefacts in front of the retina (eyelash shadows, dust), illumination (fall-off, tilt, a tinted rim), white
balance and exposure, media haze (scattered light and a coloured veil), edge flare and the flash reflex, sensor
noise, gamma, then defocus, motion blur, a low-resolution capture upsampled, and JPEG.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from .camera import CameraSettings
from .canvas import Canvas, band, ellipse, polygon
from .geometry import FundusGeometry
from .textures import random_fractal, random_pixel_noise

RIM_TINT_COLOUR = (0.42, 0.62, 0.5)  # the green-cyan periphery of Zeiss-like photographs
SCATTER_CELLS = 16  # scattered light is smooth at this many cells across the image
HIGHLIGHT_KNEE = 0.75  # a strongly amplified channel rolls off above this instead of clipping (sensor response)


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


def _offsets(geom: FundusGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical offsets from the field centre in field radii, as broadcastable grids."""
    ys, xs = np.ogrid[: geom.size, : geom.size]
    dx = (xs.astype(np.float32) - geom.centre[0]) / geom.radius
    dy = (ys.astype(np.float32) - geom.centre[1]) / (geom.radius * geom.aspect)
    return dx, dy


def _illumination(geom: FundusGeometry, settings: CameraSettings, rho2: np.ndarray, dx, dy) -> np.ndarray:
    """Light reaching each point: fall-off towards the rim, and a tilt when the pupil is not centred."""
    falloff = 1.0 - settings.vignette * np.clip(rho2, 0, 1.2) ** 2
    if settings.tilt > 0:
        along = np.clip(dx * np.cos(settings.tilt_angle) + dy * np.sin(settings.tilt_angle), -1.2, 1.2)
        falloff = falloff * (1.0 - settings.tilt * 0.5 * (1.0 + along))
    return falloff * geom.field_alpha


def _low_pass(plane: np.ndarray) -> np.ndarray:
    """A very smooth copy of a plane: scattered light spreads over a large part of the field."""
    size = plane.shape[0]
    small = Image.fromarray(plane, mode="F").resize((SCATTER_CELLS, SCATTER_CELLS), Image.Resampling.BOX)
    return np.asarray(small.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


def _flare(geom: FundusGeometry, settings: CameraSettings, rho2: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bright crescent at one side of the rim (light reflected by the iris or the lens)."""
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.ogrid[: geom.size, : geom.size]
    direction = np.cos(np.arctan2(ys - geom.centre[1], xs - geom.centre[0]) - angle)
    return np.clip(settings.edge_flare * np.clip(rho2 - 0.55, 0, None) * 2.2 * np.clip(direction, 0, None) ** 3, 0, 1)


def _flash_reflex(geom: FundusGeometry, settings: CameraSettings, rng: np.random.Generator) -> np.ndarray:
    """The corneal reflex of the flash: a soft bright spot near the centre of the field."""
    offset = rng.normal(0, 0.12, 2) * geom.radius
    spot = geom.size * rng.uniform(0.03, 0.07)
    ys, xs = np.ogrid[: geom.size, : geom.size]
    dist2 = (xs - geom.centre[0] - offset[0]) ** 2 + (ys - geom.centre[1] - offset[1]) ** 2
    return (settings.flash_reflex * np.exp(-dist2 / (2 * spot * spot))).astype(np.float32)


def _roll_off_highlights(plane: np.ndarray) -> None:
    """Compress values above :data:`HIGHLIGHT_KNEE` smoothly towards 1, in place (a bright disc under a strong
    colour cast keeps its shading instead of clipping to one flat colour)."""
    over = plane > HIGHLIGHT_KNEE
    headroom = 1.0 - HIGHLIGHT_KNEE
    plane[over] = HIGHLIGHT_KNEE + headroom * np.tanh((plane[over] - HIGHLIGHT_KNEE) / headroom)


def _motion_blur(image: Image.Image, length: float, angle: float) -> Image.Image:
    """Average of copies shifted along a line: the eye or the camera moved during the exposure."""
    pixels = np.asarray(image, dtype=np.float32)
    steps = max(int(round(length)), 2)
    total = np.zeros_like(pixels)
    for t in np.linspace(-length / 2, length / 2, steps):
        shift = (int(round(t * np.sin(angle))), int(round(t * np.cos(angle))))
        total += np.roll(pixels, shift, axis=(0, 1))
    return Image.fromarray((total / steps).round().astype(np.uint8))


def _sharpness(image: Image.Image, settings: CameraSettings) -> Image.Image:
    """Defocus (or the detail media haze takes away), motion, and a low-resolution capture shown upsampled."""
    scale = image.width / 512.0
    blur = max(settings.blur, settings.haze_blur)
    if blur >= 1.5:
        image = image.filter(ImageFilter.GaussianBlur(blur * scale))
    elif blur > 0:
        image = image.filter(ImageFilter.BoxBlur(blur * scale))
    if settings.motion_blur > 0:
        image = _motion_blur(image, settings.motion_blur * scale, settings.motion_angle)
    if settings.capture_scale < 1.0:
        small = max(int(round(image.width * settings.capture_scale)), 16)
        image = image.resize((small, small), Image.Resampling.BOX).resize(image.size, Image.Resampling.BICUBIC)
    return image


def expose(canvas: Canvas, geom: FundusGeometry, settings: CameraSettings, rng: np.random.Generator) -> Image.Image:
    """Apply the optics and sensor to the painted fundus and return the final 8-bit RGB photograph."""
    size = geom.size
    dx, dy = _offsets(geom)
    rho2 = dx * dx + dy * dy
    if settings.eyelashes:
        _eyelash_shadows(canvas, geom, rng, settings.eyelashes)
    if settings.dust:
        _dust(canvas, geom, rng, settings.dust)
    alpha = geom.field_alpha
    light = _illumination(geom, settings, rho2, dx, dy)
    gains = np.array(settings.white_balance, np.float32) * settings.gain
    rim = None
    if settings.rim_tint > 0:
        rim = settings.rim_tint * np.clip((rho2 - 0.4) / 0.6, 0, 1) ** 1.5 * alpha
    haze_weight = None
    if settings.haze > 0:
        haze_weight = settings.haze * (0.6 + 0.2 * random_fractal(size, rng, coarsest=3) + 0.4 * rho2) * alpha
    field_spread = np.maximum(_low_pass(alpha), 0.05) if settings.haze_scatter > 0 else None
    flare = _flare(geom, settings, rho2, rng) * alpha if settings.edge_flare > 0 else None
    reflex = _flash_reflex(geom, settings, rng) * alpha if settings.flash_reflex > 0 else None
    noise = random_pixel_noise(size, rng)
    roll_off = settings.degradation != "overexposed" and (float(gains.max()) > 1.2 or settings.red_to_green > 0)
    for c in range(3):
        canvas.rgb[c] *= light * gains[c]
    if settings.red_to_green > 0:  # a yellow-green cast: part of the red reflectance is recorded as green
        canvas.rgb[1] += settings.red_to_green * canvas.rgb[0]
        canvas.rgb[2] += 0.15 * settings.red_to_green * canvas.rgb[0]
    planes = []
    for c in range(3):
        plane = canvas.rgb[c]
        if rim is not None:
            plane += rim * (RIM_TINT_COLOUR[c] * settings.gain - plane)
        if field_spread is not None:  # light scattered by cloudy media: detail washes into a smooth glow
            scattered = _low_pass(plane) / field_spread
            plane *= 1.0 - settings.haze_scatter
            plane += settings.haze_scatter * scattered * alpha
        if haze_weight is not None:
            plane += haze_weight * (settings.haze_colour[c] * settings.gain - plane)
        if flare is not None:
            plane += flare * (settings.flare_colour[c] - plane)
        if reflex is not None:
            plane += reflex * ((0.95, 0.97, 1.0)[c] - plane)
        plane += noise[..., c] * (settings.noise * alpha)
        if roll_off:
            _roll_off_highlights(plane)
        plane *= 255.0
        np.clip(plane, 0, 255, out=plane)
        planes.append(Image.fromarray(plane.astype(np.uint8)))
    image = Image.merge("RGB", planes)
    if abs(settings.gamma - 1.0) > 0.02:
        table = (255.0 * (np.arange(256) / 255.0) ** settings.gamma).round().astype(np.uint8).tolist()
        image = image.point(table * 3)
    image = _sharpness(image, settings)
    if settings.jpeg_quality is not None:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=settings.jpeg_quality)
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return image
