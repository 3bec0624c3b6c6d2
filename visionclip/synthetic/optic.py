"""Optic nerve head and myopic findings: glaucomatous cupping, optic atrophy (pallor), pathologic myopia and
the tessellated fundus. Shapes are logged under ``<finding>/<feature>``."""

from __future__ import annotations

import numpy as np

from .anatomy import DiscAppearance, paint_choroidal_pattern
from .canvas import Canvas, band, ellipse, polygon
from .geometry import FundusGeometry
from .macular import draw_atrophy
from .shapes import blob, flame

PIGMENT = (0.26, 0.10, 0.05)


def glaucomatous_disc(disc: DiscAppearance, rng: np.random.Generator) -> None:
    """Enlarge the cup (vertical CDR 0.65-0.9) and, often, notch the rim superiorly or inferiorly."""
    disc.cup_ratio = float(rng.uniform(0.65, 0.88))
    if rng.random() < 0.55:
        disc.notch_angle = float(rng.choice([np.pi / 2, -np.pi / 2]) + rng.normal(0, 0.25))
        disc.notch_depth = float(rng.uniform(0.1, 0.2))


def atrophic_disc(disc: DiscAppearance, rng: np.random.Generator) -> None:
    """Optic atrophy: a pale, chalky disc."""
    disc.pallor = float(rng.uniform(0.65, 0.95))


def _crescent(geom: FundusGeometry, inner: float, outer: float, half_angle: float, rng: np.random.Generator):
    """A crescent hugging the temporal disc margin between ``inner`` and ``outer`` disc radii."""
    t = np.linspace(-half_angle, half_angle, 24)
    wobble = 1.0 + 0.08 * np.sin(3 * t + rng.uniform(0, 6.3))
    taper = np.cos(t / half_angle * np.pi / 2) ** 0.6
    r_in = geom.disc_radius * inner * np.ones_like(t)
    r_out = geom.disc_radius * (inner + (outer - inner) * taper * wobble)
    temporal = -geom.nasal

    def at(r: np.ndarray, angle: np.ndarray) -> np.ndarray:
        return np.stack(
            [geom.disc[0] + temporal * r * np.cos(angle), geom.disc[1] + r * geom.disc_aspect * np.sin(angle)], 1
        )

    return polygon(np.concatenate([at(r_out, t), at(r_in, t)[::-1]]))


def _paint_atrophy(
    canvas: Canvas, layer: str, shape: np.ndarray, opacity: float, region: str, colour: tuple, blur: float
) -> None:
    """Paint a peripapillary atrophy crescent into `layer`, log it as `region` and blend it in `colour`."""
    canvas.paint(layer, shape, opacity, region)
    canvas.blend_layer(layer, colour, blur=blur)


def draw_glaucoma_extras(
    canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator, x0: int, y0: int, cup: np.ndarray
) -> None:
    """Log the enlarged cup, and add peripapillary atrophy (beta zone) or a splinter disc haemorrhage."""
    canvas.log.add_region("is_gc/enlarged_cup", x0, y0, cup)
    if rng.random() < 0.45:
        crescent = _crescent(geom, 0.95, rng.uniform(1.2, 1.45), rng.uniform(0.6, 1.1), rng)
        _paint_atrophy(canvas, "ppa", crescent, 0.7, "is_gc/peripapillary_atrophy", (0.86, 0.66, 0.5), blur=0.8)
    if rng.random() < 0.2:
        angle = float(rng.choice([np.pi / 2, -np.pi / 2]) + rng.normal(0, 0.3))
        x = geom.disc[0] - geom.nasal * geom.disc_radius * np.cos(angle)
        y = geom.disc[1] + geom.disc_radius * geom.disc_aspect * np.sin(angle)
        shape = flame(x, y, geom.dd * 0.25, geom.dd * 0.06, np.arctan2(y - geom.disc[1], x - geom.disc[0]))
        canvas.paint("haem_flame", shape, 0.85, "is_gc/disc_haemorrhage")


def log_pale_disc(canvas: Canvas, geom: FundusGeometry) -> None:
    """Log the whole disc as the pale-disc region of optic atrophy."""
    canvas.log.add("is_aon/pale_disc", ellipse(*geom.disc, geom.disc_radius, geom.disc_radius * geom.disc_aspect))


def draw_tessellation(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator, strength: float) -> None:
    """Leopard fundus: visible large choroidal vessels; the region where they show is logged."""
    weight = paint_choroidal_pattern(canvas, geom, rng, strength)
    canvas.log.add_region("is_tessellated/choroidal_vessels", 0, 0, weight > 0.3)


def draw_myopic_changes(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator) -> None:
    """Pathologic myopia: a wide temporal peripapillary atrophy crescent (after the disc is painted), patchy
    chorioretinal atrophy, lacquer cracks and sometimes a pigmented Fuchs spot at the fovea."""
    dd = geom.dd
    crescent = _crescent(geom, 0.97, rng.uniform(1.45, 2.2), rng.uniform(0.8, 1.3), rng)
    _paint_atrophy(canvas, "myopic_crescent", crescent, 0.85, "is_pm/peripapillary_atrophy", (0.98, 0.86, 0.66), 0.6)
    if rng.random() < 0.45:
        spots = geom.sample_points(
            rng,
            int(rng.integers(1, 4)),
            around=geom.fovea,
            min_distance=0.5 * dd,
            max_distance=2.2 * dd,
            margin=0.5 * dd,
        )
        for x, y in spots:
            canvas.paint(
                "myopic_atrophy",
                blob(rng, x, y, dd * rng.uniform(0.25, 0.6), 0.35),
                0.75,
                "is_pm/chorioretinal_atrophy",
            )
            canvas.paint(
                "myopic_pigment",
                blob(rng, x + rng.normal(0, 0.1 * dd), y + rng.normal(0, 0.1 * dd), dd * 0.05, 0.5),
                0.7,
                "is_pm/chorioretinal_atrophy",
            )
        draw_atrophy(canvas, rng, "myopic_atrophy", (0.92, 0.72, 0.52), blur=1.0)
        canvas.blend_layer("myopic_pigment", PIGMENT, blur=0.6)
    if rng.random() < 0.3:
        for _ in range(int(rng.integers(1, 4))):
            start = geom.sample_points(rng, 1, around=geom.fovea, min_distance=0.3 * dd, max_distance=1.2 * dd)
            if len(start) == 0:
                continue
            angle = rng.uniform(0, np.pi)
            t = np.linspace(0, 1, 10)[:, None]
            points = start[0] + t * dd * rng.uniform(0.5, 1.0) * np.array([np.cos(angle), np.sin(angle)])
            points += rng.normal(0, 0.02 * dd, points.shape)
            canvas.paint("lacquer", band(points, max(0.03 * dd, 0.8)), 0.6, "is_pm/lacquer_crack")
        canvas.blend_layer("lacquer", (0.98, 0.85, 0.6), blur=0.4)
    if rng.random() < 0.2:
        canvas.paint("fuchs", blob(rng, *geom.fovea, dd * rng.uniform(0.1, 0.2), 0.4), 0.75, "is_pm/fuchs_spot")
        canvas.blend_layer("fuchs", PIGMENT, blur=0.8)
