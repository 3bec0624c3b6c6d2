"""Frames a fundus camera produces that are not fundus photographs (``is_fundus = 0``): an external /
anterior-segment view of the eye, a washed-out flare frame, or a dark frame with only a faint reflex."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from .camera import CameraSettings
from .canvas import Canvas, ellipse, polygon
from .exposure import expose
from .geometry import FundusGeometry
from .textures import random_fractal

KINDS: tuple[str, ...] = ("anterior_segment", "flare", "dark")


def _anterior_segment(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator) -> None:
    size = geom.size
    skin = np.array([0.78, 0.56, 0.46]) * rng.uniform(0.6, 1.1)
    texture = random_fractal(size, rng, coarsest=6)
    for c in range(3):
        canvas.rgb[c] = skin[c] * (1.0 + 0.06 * texture)
    cx, cy = geom.centre[0] + rng.normal(0, 0.05 * size), geom.centre[1] + rng.normal(0, 0.05 * size)
    width, height = size * rng.uniform(0.32, 0.42), size * rng.uniform(0.13, 0.2)
    t = np.linspace(0, 2 * np.pi, 40)
    almond = np.stack([cx + width * np.cos(t), cy + height * np.sin(t) * np.abs(np.sin(t)) ** 0.3], 1)
    canvas.paint("lid_shadow", polygon(almond * [1.0, 1.0] + [0, -2]), 0.8)
    canvas.absorb_layer("lid_shadow", (0.45, 0.35, 0.35), blur=size * 0.02)
    canvas.paint("sclera", polygon(almond), 1.0)
    canvas.blend_layer("sclera", (0.93, 0.84, 0.80), blur=1.5)
    iris_r = height * rng.uniform(1.05, 1.3)
    ix = cx + rng.normal(0, 0.1 * width)
    iris = np.array([0.42, 0.26, 0.14]) if rng.random() < 0.7 else np.array([0.40, 0.48, 0.55])
    canvas.paint("iris", ellipse(ix, cy, iris_r), 1.0)
    canvas.blend_layer("iris", iris * rng.uniform(0.7, 1.1), blur=1.0)
    box, dx, dy = canvas.local_grid(ix, cy, iris_r)
    angle = np.arctan2(dy, dx)
    x0, y0, x1, y1 = box
    crypts = texture[y0:y1, x0:x1]  # irregular iris crypts and furrows
    radius = np.hypot(dx, dy) / iris_r
    fibres = 1.0 + (0.12 * np.sin(angle * rng.integers(40, 70) + 2.5 * crypts) + 0.1 * crypts) * (radius < 1)
    fibres *= 1.0 - 0.35 * np.clip(radius - 0.85, 0, 0.15) / 0.15 * (radius < 1)  # darker limbal ring
    canvas.rgb[:, y0:y1, x0:x1] *= fibres[None].astype(np.float32)
    canvas.paint("pupil", ellipse(ix, cy, iris_r * rng.uniform(0.3, 0.5)), 1.0)
    canvas.blend_layer("pupil", (0.03, 0.02, 0.02), blur=0.8)
    canvas.paint("highlight", ellipse(ix + iris_r * 0.25, cy - iris_r * 0.2, iris_r * 0.08), 1.0)
    canvas.blend_layer("highlight", (1.0, 1.0, 1.0), blur=1.0)


def _flare(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator) -> None:
    glow = random_fractal(geom.size, rng, coarsest=3)
    colour = np.array([1.0, rng.uniform(0.75, 0.95), rng.uniform(0.5, 0.8)])
    for c in range(3):
        canvas.rgb[c] = colour[c] * (0.9 + 0.08 * glow)


def _dark(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator) -> None:
    glow = random_fractal(geom.size, rng, coarsest=3)
    colour = np.array([0.12, 0.03, 0.015]) * rng.uniform(0.5, 1.5)
    for c in range(3):
        canvas.rgb[c] = colour[c] * (1.0 + 0.3 * glow)
    canvas.paint("reflex", ellipse(*geom.centre, geom.radius * rng.uniform(0.05, 0.15)), 0.6)
    canvas.blend_layer("reflex", (0.9, 0.8, 0.7), blur=geom.size * 0.03)


def render_non_fundus(geom: FundusGeometry, rng: np.random.Generator, settings: CameraSettings) -> Image.Image:
    """One non-fundus frame of a random kind (see :data:`KINDS`)."""
    kind = KINDS[int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
    canvas = Canvas(geom.size)
    {"anterior_segment": _anterior_segment, "flare": _flare, "dark": _dark}[kind](canvas, geom, rng)
    image = expose(canvas, geom, settings, rng)
    if kind == "flare":
        image = image.filter(ImageFilter.GaussianBlur(geom.size * 0.01))
    return image
