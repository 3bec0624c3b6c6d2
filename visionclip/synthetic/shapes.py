"""Lesion outlines: irregular blobs, feathered flames, boat shapes and tortuous micro-vessels."""

from __future__ import annotations

import numpy as np

from .canvas import Shape, band, polygon
from .geometry import FundusGeometry


def blob(rng: np.random.Generator, cx: float, cy: float, radius: float, roughness: float = 0.25) -> Shape:
    """A roundish polygon whose radius wobbles by ``roughness`` (blot haemorrhages, exudate plaques)."""
    vertices = 14
    t = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    wobble = (
        1.0
        + roughness
        * (
            rng.uniform(-1, 1) * np.cos(2 * t + rng.uniform(0, 6.3))
            + rng.uniform(-1, 1) * np.sin(3 * t + rng.uniform(0, 6.3))
        )
        / 2
    )
    r = max(radius, 0.5) * wobble * rng.uniform(0.85, 1.15, vertices) ** roughness
    return polygon(np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1))


def flame(cx: float, cy: float, length: float, width: float, angle: float) -> Shape:
    """A flame (splinter) shape: a lens pointed at both ends, long axis along ``angle``."""
    t = np.linspace(-1, 1, 9)
    half = width / 2 * (1 - t**2) ** 0.7
    along = t * length / 2
    c, s = np.cos(angle), np.sin(angle)
    upper = np.stack([cx + c * along - s * half, cy + s * along + c * half], 1)
    lower = np.stack([cx + c * along + s * half, cy + s * along - c * half], 1)[::-1]
    return polygon(np.concatenate([upper, lower[1:-1]]))


def boat(cx: float, cy: float, rx: float, ry: float) -> Shape:
    """A pre-retinal (subhyaloid) haemorrhage: flat fluid level on top, rounded bottom."""
    t = np.linspace(0, np.pi, 16)
    bottom = np.stack([cx + rx * np.cos(t), cy - 0.15 * ry + ry * np.sin(t)], 1)
    return polygon(bottom)


def squiggle(rng: np.random.Generator, x: float, y: float, length: float, width: float, curl: float = 0.5) -> Shape:
    """A thin tortuous vessel (IRMA, new vessels): a random walk with strong heading changes."""
    steps = max(int(length / max(width, 0.6)), 6)
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, curl, steps))
    step = length / steps
    points = np.stack([x + np.cumsum(step * np.cos(heading)), y + np.cumsum(step * np.sin(heading))], 1)
    return band(points, width)


def fibre_angle(geom: FundusGeometry, x: float, y: float) -> float:
    """Approximate direction of the retinal nerve fibres at (x, y): radial from the disc, arching around the
    fovea on the temporal side (flame haemorrhages and cotton-wool spots lie along it)."""
    radial = np.arctan2(y - geom.disc[1], x - geom.disc[0])
    fx, fy = x - geom.fovea[0], y - geom.fovea[1]
    around = np.arctan2(fy, fx) + np.pi / 2
    temporal = (x - geom.disc[0]) * geom.nasal < 0
    weight = float(np.exp(-((np.hypot(fx, fy) / (1.8 * geom.dd)) ** 2))) if temporal else 0.0
    # Average orientations (not directions) on doubled angles.
    return float(np.angle((1 - weight) * np.exp(2j * radial) + weight * np.exp(2j * around)) / 2)
