"""Macular findings: AMD (drusen, geographic atrophy, pigment), central serous detachment, epiretinal
membrane (sheen and striae) and macular hole. Shapes are logged under ``<finding>/<feature>``."""

from __future__ import annotations

import numpy as np

from .canvas import Canvas, band, ellipse
from .geometry import FundusGeometry
from .shapes import blob
from .textures import random_network

PIGMENT = (0.28, 0.11, 0.05)


def _near_fovea(geom: FundusGeometry, rng: np.random.Generator, count: int, radius_dd: float, inner_dd: float = 0.0):
    return geom.sample_points(
        rng, count, around=geom.fovea, min_distance=inner_dd * geom.dd, max_distance=radius_dd * geom.dd, margin=2.0
    )


def draw_amd(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator) -> None:
    """Drusen clustered at the macula, with geographic atrophy and pigment clumps in some eyes."""
    dd = geom.dd
    scale = canvas.size / 512.0
    soft = rng.random() < 0.5
    count = int(rng.integers(12, 70))
    spread = rng.uniform(1.0, 1.7)
    for x, y in _near_fovea(geom, rng, count, spread):
        radius = dd * (rng.uniform(0.05, 0.12) if soft and rng.random() < 0.6 else rng.uniform(0.025, 0.055))
        canvas.paint("drusen", ellipse(x, y, radius), rng.uniform(0.35, 0.6), "is_amd/drusen")
    canvas.blend_layer("drusen", (0.96, 0.76, 0.45), blur=(1.4 if soft else 0.8) * scale)
    if rng.random() < 0.35:
        offset = _near_fovea(geom, rng, 1, 0.3)
        if len(offset):
            x, y = offset[0]
            canvas.paint("atrophy", blob(rng, x, y, dd * rng.uniform(0.3, 0.7), 0.3), 0.7, "is_amd/geographic_atrophy")
            draw_atrophy(canvas, rng, "atrophy", (0.93, 0.62, 0.42), blur=1.0 * scale)
    if rng.random() < 0.4:
        for x, y in _near_fovea(geom, rng, int(rng.integers(3, 12)), 1.2):
            canvas.paint(
                "pigment", blob(rng, x, y, dd * rng.uniform(0.02, 0.06), 0.5), rng.uniform(0.5, 0.85), "is_amd/pigment"
            )
        canvas.blend_layer("pigment", PIGMENT, blur=0.5 * scale)


def draw_atrophy(
    canvas: Canvas, rng: np.random.Generator, layer: str, colour: tuple[float, float, float], blur: float
) -> None:
    """Blend an atrophy layer: pale, with the large choroidal vessels showing through it."""
    taken = canvas.take_alpha(layer, blur)
    if taken is None:
        return
    (x0, y0, x1, y1), alpha = taken
    canvas.blend((x0, y0, x1, y1), alpha, colour)
    network = random_network(canvas.size, rng)[y0:y1, x0:x1]
    canvas.absorb((x0, y0, x1, y1), alpha * 0.45 * (1.0 - network), (0.75, 0.55, 0.6))


def draw_serous_detachment(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator) -> None:
    """Central serous chorioretinopathy: a round, slightly darker, duller blister with a faint light-reflex rim."""
    dd = geom.dd
    angle = rng.uniform(0, 2 * np.pi)
    shift = dd * rng.uniform(0.0, 0.35)
    cx, cy = geom.fovea[0] + shift * np.cos(angle), geom.fovea[1] + shift * np.sin(angle)
    rx, ry = dd * rng.uniform(0.75, 1.3), dd * rng.uniform(0.65, 1.1)
    tilt = rng.uniform(0, np.pi)
    canvas.paint("blister", ellipse(cx, cy, rx, ry, tilt), rng.uniform(0.25, 0.4), "is_crp/serous_detachment")
    canvas.blend_layer("blister", (0.68, 0.28, 0.16), blur=0.18 * dd)
    t = np.linspace(0, 2 * np.pi, 48)
    c, s = np.cos(tilt), np.sin(tilt)
    ring = np.stack([cx + c * rx * np.cos(t) - s * ry * np.sin(t), cy + s * rx * np.cos(t) + c * ry * np.sin(t)], 1)
    canvas.paint("blister_rim", band(ring, dd * 0.04), 0.22, "is_crp/serous_detachment")
    canvas.blend_layer("blister_rim", (1.0, 0.8, 0.66), blur=0.05 * dd)
    if rng.random() < 0.35:
        for x, y in geom.sample_points(rng, int(rng.integers(4, 12)), around=(cx, cy), max_distance=0.6 * rx):
            canvas.paint("precipitates", ellipse(x, y, dd * 0.02), 0.7, "is_crp/subretinal_precipitates")
        canvas.blend_layer("precipitates", (0.98, 0.85, 0.55), blur=0.4)


def draw_epiretinal_membrane(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator) -> None:
    """Cellophane macular sheen (irregular glistening patches) and fine radiating retinal striae."""
    dd = geom.dd
    for x, y in _near_fovea(geom, rng, int(rng.integers(3, 7)), 1.0):
        canvas.paint(
            "sheen", blob(rng, x, y, dd * rng.uniform(0.2, 0.45), 0.45), rng.uniform(0.12, 0.22), "is_em/membrane"
        )
    canvas.blend_layer("sheen", (1.0, 0.86, 0.78), blur=0.12 * dd)
    hub = _near_fovea(geom, rng, 1, 0.5)
    cx, cy = hub[0] if len(hub) else geom.fovea
    for angle in rng.uniform(0, 2 * np.pi, int(rng.integers(7, 15))):
        length = dd * rng.uniform(0.45, 1.0)
        t = np.linspace(0.15, 1, 12)[:, None]
        wobble = rng.normal(0, 0.05, (12, 1)).cumsum(0)
        direction = np.array([np.cos(angle), np.sin(angle)])
        normal = np.array([-direction[1], direction[0]])
        points = np.array([cx, cy]) + t * length * direction + wobble * dd * 0.2 * normal
        canvas.paint("striae", band(points, max(dd * 0.014, 0.6)), rng.uniform(0.3, 0.5), "is_em/striae")
    canvas.blend_layer("striae", (1.0, 0.9, 0.85), blur=0.3)


def draw_macular_hole(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator) -> None:
    """A full-thickness hole at the fovea: sharp round deep-red disc, greyish cuff of fluid, yellow deposits."""
    dd = geom.dd
    radius = dd * rng.uniform(0.12, 0.22)
    x, y = geom.fovea[0] + rng.normal(0, 0.03 * dd), geom.fovea[1] + rng.normal(0, 0.03 * dd)
    canvas.paint("cuff", ellipse(x, y, radius * rng.uniform(1.9, 2.5)), rng.uniform(0.3, 0.45), "is_mh/cuff")
    canvas.blend_layer("cuff", (0.78, 0.52, 0.42), blur=0.1 * dd)
    canvas.paint("hole", ellipse(x, y, radius), 0.9, "is_mh/hole")
    canvas.blend_layer("hole", (0.66, 0.12, 0.06), blur=0.4)
    for px, py in geom.sample_points(rng, int(rng.integers(2, 7)), around=(x, y), max_distance=0.7 * radius):
        canvas.paint("hole_dots", ellipse(px, py, max(dd * 0.015, 0.6)), 0.8, "is_mh/hole")
    canvas.blend_layer("hole_dots", (0.98, 0.85, 0.5), blur=0.3)
