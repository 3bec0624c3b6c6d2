"""Laser photocoagulation scars (``is_treated``): panretinal, sector or focal/grid macular patterns."""

from __future__ import annotations

import numpy as np

from .canvas import Canvas
from .geometry import FundusGeometry
from .shapes import blob

PATTERNS: tuple[str, ...] = ("panretinal", "sector", "focal")


def _hex_grid(size: int, spacing: float, rng: np.random.Generator) -> np.ndarray:
    ys = np.arange(rng.uniform(0, spacing), size, spacing * 0.866)
    xs = np.arange(rng.uniform(0, spacing), size, spacing)
    grid_x, grid_y = np.meshgrid(xs, ys)
    grid_x = grid_x + (np.arange(len(ys))[:, None] % 2) * spacing / 2
    return np.stack([grid_x.ravel(), grid_y.ravel()], 1)


def draw_laser_scars(
    canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator, pattern: str, superior: bool = True
) -> int:
    """Burn scars in rows: pigmented rims with pale atrophic centres (older scars) or soft grey-white spots
    (recent ones); returns the number of scars drawn."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown laser pattern {pattern!r}; expected one of {PATTERNS}")
    dd = geom.dd
    if pattern == "focal":
        radius = dd * rng.uniform(0.035, 0.05)
        spacing = radius * rng.uniform(3.0, 4.0)
    else:
        radius = dd * rng.uniform(0.06, 0.1)
        spacing = radius * rng.uniform(2.4, 3.2)
    points = _hex_grid(geom.size, spacing, rng) + rng.normal(0, 0.15 * spacing, (1, 2))
    points += rng.normal(0, 0.08 * spacing, points.shape)
    to_fovea = np.hypot(points[:, 0] - geom.fovea[0], points[:, 1] - geom.fovea[1])
    to_disc = np.hypot(points[:, 0] - geom.disc[0], points[:, 1] - geom.disc[1])
    keep = geom.inside(points[:, 0], points[:, 1], margin=radius + 2) & (to_disc > geom.disc_radius + 0.6 * dd)
    if pattern == "focal":
        keep &= (to_fovea > 0.5 * dd) & (to_fovea < 1.8 * dd)
        dropout = 0.4
    else:
        keep &= to_fovea > rng.uniform(2.8, 3.4) * dd
        dropout = 0.35
        if pattern == "sector":
            keep &= (points[:, 1] < geom.fovea[1]) if superior else (points[:, 1] >= geom.fovea[1])
    keep &= rng.random(len(points)) > dropout
    points = points[keep]
    if len(points) == 0:  # keep the label honest: a short row of scars where there is room
        points = geom.sample_points(rng, 6, around=geom.fovea, min_distance=2.0 * dd, margin=radius + 2)
    recent = rng.random() < 0.2
    for x, y in points:
        r = radius * rng.uniform(0.75, 1.25)
        if recent:
            canvas.paint("laser_pale", blob(rng, x, y, r, 0.3), rng.uniform(0.25, 0.45), "is_treated/laser_scar")
        else:
            canvas.paint(
                "laser_pigment", blob(rng, x, y, r * 1.1, 0.4), rng.uniform(0.35, 0.8), "is_treated/laser_scar"
            )
            if rng.random() < 0.7:
                canvas.paint("laser_pale", blob(rng, x, y, r * rng.uniform(0.5, 0.8), 0.4), rng.uniform(0.3, 0.6))
    scale = canvas.size / 512.0
    canvas.blend_layer("laser_pigment", (0.30, 0.12, 0.06), blur=0.7 * scale)
    pale = (0.86, 0.72, 0.62) if recent else (0.90, 0.72, 0.52)
    canvas.blend_layer("laser_pale", pale, blur=(1.5 if recent else 0.8) * scale)
    return len(points)
