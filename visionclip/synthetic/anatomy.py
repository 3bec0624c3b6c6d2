"""The normal fundus: orange-red background with choroidal texture, the macula and fovea, the optic disc and cup.

Colours are reflectances in [0, 1] before the camera model (white balance, exposure, vignetting of the optics)
is applied in :mod:`.camera`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .canvas import Canvas
from .geometry import FundusGeometry
from .textures import random_fractal, random_network

LIGHT_FUNDUS = np.array([0.97, 0.33, 0.15], np.float32)
DARK_FUNDUS = np.array([0.82, 0.26, 0.1], np.float32)


@dataclass
class DiscAppearance:
    """How to draw the optic nerve head; findings change these values before it is painted."""

    cup_ratio: float = 0.35
    pallor: float = 0.0
    notch_angle: float | None = None
    notch_depth: float = 0.0
    swelling: float = 0.0


def sample_disc(rng: np.random.Generator) -> DiscAppearance:
    """A normal disc: vertical cup-to-disc ratio mostly 0.2-0.5."""
    return DiscAppearance(cup_ratio=float(np.clip(rng.normal(0.36, 0.07), 0.18, 0.52)))


def paint_background(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator) -> np.ndarray:
    """Fill the canvas with the fundus background and return the base reflectance used (RGB)."""
    size = geom.size
    pigment = rng.beta(2.0, 2.2)
    base = LIGHT_FUNDUS + (DARK_FUNDUS - LIGHT_FUNDUS) * pigment
    base = base * np.array([1.0, rng.uniform(0.88, 1.14), rng.uniform(0.85, 1.2)], np.float32)
    ys, xs = np.ogrid[:size, :size]
    dx = (xs.astype(np.float32) - geom.centre[0]) / geom.radius
    dy = (ys.astype(np.float32) - geom.centre[1]) / geom.radius
    tilt = rng.normal(0, 0.06, 2)
    # The posterior pole is lit more evenly than the periphery; a mild tilt mimics off-axis illumination.
    shade = (1.0 - rng.uniform(0.10, 0.22) * (dx * dx + dy * dy)) + (tilt[0] * dx + tilt[1] * dy)
    blotches = random_fractal(size, rng, coarsest=4)
    grain = random_fractal(size, rng, coarsest=max(size // 16, 8))
    blotch_amp = np.array([0.015, 0.06, 0.05], np.float32) * rng.uniform(0.7, 1.4)
    grain_amp = np.array([0.012, 0.065, 0.045], np.float32) * rng.uniform(0.7, 1.4)
    for c in range(3):
        plane = canvas.rgb[c]
        np.multiply(blotches, blotch_amp[c], out=plane)
        plane += grain_amp[c] * grain
        plane += 1.0
        plane *= shade
        plane *= base[c]
    return base


def paint_choroidal_pattern(
    canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator, strength: float
) -> np.ndarray:
    """Tessellation: large orange choroidal vessels with dark pigmented spaces between them.

    Strongest around the disc and along the arcades, fading towards the fovea. Returns the weight map (where the
    pattern is visible) so callers can log it as a finding region.
    """
    size = geom.size
    network = random_network(size, rng)
    ys, xs = np.ogrid[:size, :size]
    fx = (xs.astype(np.float32) - geom.fovea[0]) / geom.dd
    fy = (ys.astype(np.float32) - geom.fovea[1]) / geom.dd
    dist = np.sqrt(fx * fx + fy * fy)
    # Sample the network in warped polar coordinates around the fovea: the large choroidal vessels run
    # radially towards the periphery (to the vortex veins), so stretch the pattern along the radius.
    angle = np.arctan2(fy, fx)
    spokes = rng.uniform(30, 42)
    column = ((angle * (spokes / (2 * np.pi)) + 100.0) * (size / 24.0)).astype(np.int64) % size
    row = ((np.log1p(dist) * rng.uniform(4.0, 5.5)) * (size / 24.0)).astype(np.int64) % size
    network = network[row, column]
    weight = strength * np.clip((dist - 0.6) / 1.6, 0.0, 1.0)
    spaces = (1.0 - network) * weight
    # The pigmented spaces between the choroidal vessels darken to brown; the vessels keep the orange-red.
    space_darkening = np.array([0.22, 0.34, 0.24], np.float32)
    for c in range(3):
        canvas.rgb[c] *= 1.0 - space_darkening[c] * spaces
    return weight


def paint_macula(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator) -> None:
    """Darker, browner macula with a darker fovea and, sometimes, a tiny foveal light reflex."""
    dd = geom.dd
    sigma = dd * rng.uniform(0.75, 1.0)
    box, dx, dy = canvas.local_grid(*geom.fovea, 3.2 * sigma)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return
    r2 = dx * dx + dy * dy
    macula = np.exp(-r2 / (2 * sigma * sigma))
    fovea = np.exp(-r2 / (2 * (0.25 * dd) ** 2))
    depth = np.array([0.2, 0.45, 0.32], np.float32) * rng.uniform(0.7, 1.15)
    pit = np.array([0.1, 0.25, 0.15], np.float32) * rng.uniform(0.5, 1.2)
    for c in range(3):
        canvas.rgb[c, y0:y1, x0:x1] *= (1.0 - depth[c] * macula) * (1.0 - pit[c] * fovea)
    if rng.random() < 0.5:
        reflex = 0.12 * np.exp(-r2 / (2 * (0.035 * dd + 0.4) ** 2))
        canvas.blend(box, reflex, (1.0, 0.85, 0.75))


def _soft_step(edge_distance: np.ndarray, softness: float) -> np.ndarray:
    """0 outside, 1 inside, linear ramp of ``softness`` pixels across the boundary."""
    return np.clip(edge_distance / softness + 0.5, 0.0, 1.0)


def disc_polar(geom: FundusGeometry, dx: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised elliptical radius (1 on the disc margin) and angle (0 = temporal, +pi/2 = inferior)."""
    r = geom.disc_radius
    u = -geom.nasal * dx / r
    v = dy / (r * geom.disc_aspect)
    return np.sqrt(u * u + v * v), np.arctan2(v, u)


def cup_boundary(disc: DiscAppearance, theta: np.ndarray) -> np.ndarray:
    """Cup radius (as a fraction of the disc radius) in each direction, including a glaucomatous notch."""
    boundary = disc.cup_ratio * (1.0 + 0.08 * np.cos(theta))  # cups sit slightly temporally
    if disc.notch_angle is not None and disc.notch_depth > 0:
        gap = np.angle(np.exp(1j * (theta - disc.notch_angle)))
        boundary = boundary + disc.notch_depth * np.exp(-((gap / 0.45) ** 2))
    return np.minimum(boundary, 0.97)


def paint_disc(
    canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator, disc: DiscAppearance
) -> tuple[int, int, np.ndarray]:
    """Paint the optic disc, its cup and peripapillary glow.

    Returns (x0, y0, cup) with ``cup`` the boolean cup region of a box at (x0, y0), used to log glaucoma's cup.
    """
    r = geom.disc_radius
    box, dx, dy = canvas.local_grid(*geom.disc, 2.6 * r)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return 0, 0, np.zeros((0, 0), bool)
    rho, theta = disc_polar(geom, dx, dy)
    # Light scattered from the bright disc lifts the surrounding retina.
    glow = np.exp(-(((rho - 1.0) / 0.7) ** 2)) * (rho > 1.0) * rng.uniform(0.10, 0.2)
    canvas.blend(box, glow, (1.0, 0.7, 0.45))
    softness = 1.6 + disc.swelling * 0.35 * r
    disc_alpha = _soft_step((1.0 - rho) * r, softness)
    rim = np.array([1.0, 0.64, 0.36], np.float32) * rng.uniform(0.95, 1.03)
    pale = np.array([0.99, 0.90, 0.72], np.float32)
    rim = rim + disc.pallor * (pale - rim)
    # Temporal rim is paler than nasal rim (thinner nerve fibre layer); the rim brightens towards the cup.
    paling = (0.5 + 0.5 * np.cos(theta)) * 0.22 + np.clip(1.0 - rho, 0, 1) * 0.25
    rim_colour = [rim[c] + paling * (pale[c] - rim[c]) for c in range(3)]
    canvas.blend(box, disc_alpha * 0.9, rim_colour)
    cup_edge = cup_boundary(disc, theta)
    cup_alpha = _soft_step((cup_edge - rho) * r, max(0.22 * r, 1.0))
    cup_colour = np.array([1.0, 0.92, 0.66], np.float32) * rng.uniform(0.95, 1.02)
    canvas.blend(box, cup_alpha * disc_alpha * 0.85, cup_colour)
    if rng.random() < 0.5:  # scleral ring at the margin
        ring = np.exp(-(((rho - 1.0) * r / 0.9) ** 2)) * rng.uniform(0.15, 0.35)
        canvas.blend(box, ring, pale)
    return x0, y0, (cup_alpha >= 0.5) & (rho < 1.0)
