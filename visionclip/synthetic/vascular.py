"""Vascular findings that change the vessel tree: retinal vein occlusion and hypertensive retinopathy.

Vessel edits (calibre, tortuosity, AV nicking) run on the :class:`VesselLayout` before it is drawn; the
haemorrhages and cotton-wool spots are painted afterwards on the shared retinal lesion layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .canvas import Canvas, band, ellipse
from .dr_lesions import draw_cotton_wool
from .geometry import FundusGeometry
from .shapes import blob, fibre_angle, flame
from .vessels import STEP, VesselLayout


@dataclass
class Occlusion:
    """Where a vein is occluded: ``central`` (all veins) or one branch (trunk index, arclength in DD)."""

    central: bool
    points: np.ndarray  # indices of the affected centre-line points


def occlude_vein(
    layout: VesselLayout, canvas: Canvas, rng: np.random.Generator, central: bool, superior: bool = True
) -> Occlusion:
    """Dilate and twist the veins drained by the occluded vein (all veins for a central occlusion).

    A branch occlusion takes the superotemporal (``superior``) or inferotemporal arcade vein, falling back to the
    other arcade, then to a central occlusion, when too little of the drained sector is in view.
    """
    tree, geom = layout.tree, layout.geom
    owner = tree.vessel_of_point
    centres = layout.centres()
    visible = geom.inside(centres[:, 0], centres[:, 1], margin=3.0)
    if not central:
        best, best_points = None, None
        preferred = 0 if superior else 1
        trunks = np.nonzero(tree.is_vein & (tree.depth == 0) & np.isin(tree.arcade, (0, 1)))[0]
        for trunk in sorted(trunks, key=lambda t: tree.arcade[t] != preferred):
            site = rng.uniform(0.9, 2.2)
            lineage = (tree.root[owner] == trunk) & tree.is_vein[owner]
            downstream = np.where(owner == trunk, tree.arclength >= site, tree.root_arclength[owner] >= site)
            points = np.nonzero(lineage & downstream)[0]
            if visible[points].sum() >= 8 or best_points is None:
                best, best_points = trunk, points
                if visible[points].sum() >= 8:
                    break
        if best is None or visible[best_points].sum() < 8:
            central = True
        else:
            affected = best_points
    if central:
        affected = np.nonzero(tree.is_vein[owner] & (tree.depth[owner] <= 2))[0]
    layout.width_scale[affected] *= rng.uniform(1.35, 1.6)
    wavelength = rng.uniform(0.6, 1.1)
    layout.shift[affected] += rng.uniform(0.02, 0.045) * np.sin(2 * np.pi * tree.arclength[affected] / wavelength)
    trunk_points = affected[(tree.depth[owner[affected]] == 0) & visible[affected]]
    moved = layout.centres()
    half = layout.half_widths()
    for vessel in np.unique(owner[trunk_points]):
        run = trunk_points[owner[trunk_points] == vessel]
        if len(run) >= 2:
            canvas.log.add("is_rvo/dilated_tortuous_vein", band(moved[run], 2 * half[run] + 2))
    return Occlusion(central, affected)


def draw_rvo_haemorrhages(canvas: Canvas, layout: VesselLayout, rng: np.random.Generator, occlusion: Occlusion) -> int:
    """Flame and blot haemorrhages in the drained sector (or all around the disc for a central occlusion)."""
    geom = layout.geom
    dd = geom.dd
    tag = "is_rvo/haemorrhage"
    centres = layout.centres()
    if occlusion.central:
        anchors = geom.sample_points(
            rng, int(rng.integers(50, 110)), around=geom.disc, min_distance=0.6 * dd, max_distance=4.0 * dd, margin=3.0
        )
        jitter = np.zeros_like(anchors)
    else:
        points = occlusion.points[geom.inside(centres[occlusion.points, 0], centres[occlusion.points, 1], 3.0)]
        picks = rng.choice(points, size=int(rng.integers(20, 60)))
        anchors = centres[picks]
        jitter = rng.normal(0, 0.3 * dd, anchors.shape)
    placed = 0
    for (x, y), (jx, jy) in zip(anchors, jitter, strict=True):
        x, y = x + jx, y + jy
        if not geom.inside(x, y, 3.0) or np.hypot(x - geom.disc[0], y - geom.disc[1]) < 1.1 * geom.disc_radius:
            continue
        if rng.random() < 0.7:
            shape = flame(x, y, dd * rng.uniform(0.2, 0.55), dd * rng.uniform(0.06, 0.12), fibre_angle(geom, x, y))
            canvas.paint("haem_flame", shape, rng.uniform(0.6, 0.9), tag)
        else:
            canvas.paint("haem", blob(rng, x, y, dd * rng.uniform(0.06, 0.15), 0.35), rng.uniform(0.7, 0.9), tag)
        placed += 1
    if placed == 0:  # the drained sector is out of view: keep the label honest with haemorrhages by the disc
        for x, y in geom.sample_points(rng, 12, around=geom.disc, min_distance=0.7 * dd, max_distance=2.5 * dd):
            canvas.paint("haem_flame", flame(x, y, 0.3 * dd, 0.08 * dd, fibre_angle(geom, x, y)), 0.8, tag)
            placed += 1
    if rng.random() < 0.4:
        for x, y in anchors[: int(rng.integers(1, 4))]:
            if geom.inside(x, y, 3.0):
                draw_cotton_wool(canvas, geom, rng, x, y, "is_rvo/cotton_wool_spot")
    return placed


def hypertensive_vessels(layout: VesselLayout, canvas: Canvas, rng: np.random.Generator) -> int:
    """Arteriolar narrowing, a brighter arteriolar reflex (copper wiring) and AV nicking at visible
    artery-over-vein crossings; returns the number of nicks drawn."""
    tree, geom = layout.tree, layout.geom
    owner = tree.vessel_of_point
    arteries = ~tree.is_vein[owner]
    layout.width_scale[arteries] *= rng.uniform(0.55, 0.72)
    layout.reflex_strength = float(rng.uniform(0.35, 0.55))
    if len(tree.crossings) == 0:
        return 0
    centres = layout.centres()
    sites = tree.crossings[:, 0]
    visible = geom.inside(centres[sites, 0], centres[sites, 1], margin=0.4 * geom.dd)
    candidates = sites[visible]
    nicks = 0
    for point in rng.permutation(candidates)[: int(rng.integers(1, 4))]:
        vessel = owner[point]
        a, b = tree.start[vessel], tree.start[vessel + 1]
        index = np.arange(a, b)
        gap = (index - point) * STEP
        layout.width_scale[a:b] *= (1.0 - 0.85 * np.exp(-((gap / 0.14) ** 2))).astype(np.float32)
        canvas.log.add("is_htr/av_nicking", ellipse(*centres[point], 0.25 * geom.dd))
        nicks += 1
    return nicks


def draw_hypertensive_lesions(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator, nicks: int) -> None:
    """Cotton-wool spots and a few flame haemorrhages around the disc (always some spots when no AV nick
    could be shown)."""
    dd = geom.dd
    spots = int(rng.integers(1, 5)) if rng.random() < 0.5 else 0
    if nicks == 0:
        spots = max(spots, 2)
    for x, y in geom.sample_points(rng, spots, around=geom.disc, min_distance=0.8 * dd, max_distance=3.0 * dd):
        draw_cotton_wool(canvas, geom, rng, x, y, "is_htr/cotton_wool_spot")
    if rng.random() < 0.3:
        for x, y in geom.sample_points(
            rng, int(rng.integers(2, 7)), around=geom.disc, min_distance=0.7 * dd, max_distance=2.5 * dd
        ):
            shape = flame(x, y, dd * rng.uniform(0.2, 0.4), dd * rng.uniform(0.05, 0.09), fibre_angle(geom, x, y))
            canvas.paint("haem_flame", shape, rng.uniform(0.6, 0.85), "is_htr/flame_haemorrhage")
