"""Drawing diabetic retinopathy and diabetic macular oedema, and counting what was drawn.

Lesion sizes are in disc diameters (DD): microaneurysms ~0.03 DD, dot haemorrhages ~0.07 DD, blots up to 0.2 DD,
flame haemorrhages 0.2-0.5 DD long along the nerve fibres, hard exudates small sharp yellow flecks (often in
circinate rings), cotton-wool spots fluffy white patches. Every shape is logged under ``dr_grade/<lesion>`` (and
DME exudates also under ``is_dme/hard_exudate``) so masks show exactly what was drawn.
"""

from __future__ import annotations

import numpy as np

from .canvas import Canvas, Shape, band, ellipse
from .geometry import FundusGeometry
from .grading import DRInventory, DRPlan, dr_grade_from_inventory
from .shapes import blob, boat, fibre_angle, flame, squiggle
from .vessels import VesselLayout

HAEM_RED = (0.55, 0.07, 0.045)
MA_RED = (0.56, 0.06, 0.05)
EXUDATE_YELLOW = (1.0, 0.9, 0.5)
COTTON_WOOL = (0.97, 0.88, 0.78)
NEW_VESSEL_TRANSMISSION = (0.62, 0.28, 0.40)


def _posterior_points(geom: FundusGeometry, rng: np.random.Generator, count: int, quadrant: int | None, **kw):
    return geom.sample_points(
        rng,
        count,
        quadrant=quadrant,
        around=geom.fovea,
        max_distance=kw.pop("max_distance", 4.8 * geom.dd),
        min_distance=kw.pop("min_distance", 0.0),
        avoid=((geom.disc, 1.3 * geom.disc_radius),),
        margin=kw.pop("margin", 3.0),
    )


def bead_veins(layout: VesselLayout, quadrants: list[bool], rng: np.random.Generator, canvas: Canvas) -> list[bool]:
    """Give a vein in each requested quadrant sausage-like beading; return the quadrants actually beaded.

    Must run before the vessels are drawn (it edits the layout's widths).
    """
    done = [False, False, False, False]
    if not any(quadrants):
        return done
    geom, tree = layout.geom, layout.tree
    centres = layout.centres()
    half = layout.half_widths()
    quads = geom.quadrant(centres[:, 0], centres[:, 1])
    usable = geom.inside(centres[:, 0], centres[:, 1], margin=4.0) & (tree.half_width * layout.width_scale >= 0.02)
    run = int(1.2 / 0.08)
    for vessel in rng.permutation(np.nonzero(tree.is_vein & (tree.depth <= 1))[0]):
        a, b = tree.start[vessel], tree.start[vessel + 1]
        for q in range(4):
            if not quadrants[q] or done[q]:
                continue
            ok = usable[a:b] & (quads[a:b] == q)
            ok[: int(0.8 / 0.08)] = False  # not on the disc
            starts = np.nonzero(np.convolve(ok, np.ones(run), "valid") >= run)[0]
            if len(starts) == 0:
                continue
            first = a + int(starts[len(starts) // 2])
            stop = first + run
            s = np.arange(stop - first) * 0.08
            beads = 1.0 + 0.75 * np.sin(2 * np.pi * s / rng.uniform(0.28, 0.4)) ** 2
            layout.width_scale[first:stop] *= beads.astype(np.float32)
            widths = 2 * half[first:stop] * beads.max()
            canvas.log.add("dr_grade/venous_beading", band(centres[first:stop], widths))
            done[q] = True
    return done


def _haemorrhage(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator, x: float, y: float, tag) -> None:
    dd = geom.dd
    kind = rng.random()
    if kind < 0.45:
        canvas.paint("haem", ellipse(x, y, dd * rng.uniform(0.04, 0.08)), rng.uniform(0.6, 0.9), tag)
    elif kind < 0.8:
        canvas.paint("haem", blob(rng, x, y, dd * rng.uniform(0.07, 0.16), 0.35), rng.uniform(0.55, 0.85), tag)
    else:
        shape = flame(x, y, dd * rng.uniform(0.2, 0.45), dd * rng.uniform(0.06, 0.11), fibre_angle(geom, x, y))
        canvas.paint("haem_flame", shape, rng.uniform(0.65, 0.9), tag)


def _exudate_cluster(
    canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator, x: float, y: float, count: int, tag
) -> list[tuple[float, float]]:
    """A cluster of hard exudates around (x, y), sometimes as a circinate ring; returns the fleck centres."""
    dd = geom.dd
    ring = rng.random() < 0.35
    spread = dd * rng.uniform(0.15, 0.45)
    centres = []
    for _ in range(count):
        if ring:
            angle = rng.uniform(0, 2 * np.pi)
            r = spread * rng.normal(1.0, 0.12)
            px, py = x + r * np.cos(angle), y + r * np.sin(angle)
        else:
            px, py = x + rng.normal(0, spread / 2), y + rng.normal(0, spread / 2)
        if not geom.inside(px, py, margin=3.0):
            continue
        size = dd * rng.uniform(0.018, 0.06)
        canvas.paint("exudate", blob(rng, px, py, size, 0.4), rng.uniform(0.75, 0.98), tag)
        centres.append((px, py))
    return centres


def draw_dr_lesions(
    canvas: Canvas,
    geom: FundusGeometry,
    layout: VesselLayout,
    rng: np.random.Generator,
    plan: DRPlan,
    beaded: list[bool],
) -> tuple[DRInventory, Shape | None]:
    """Draw the plan's intraretinal and proliferative lesions (after the vessels) and count what was drawn.

    If placement fell short of the plan's grade (a crowded or clipped field), the missing criterion is added
    (a microaneurysm, a haemorrhage, IRMA or new vessels), so the drawn inventory always has the planned grade.
    Returns the inventory and the pre-retinal haemorrhage outline to paint with :func:`draw_preretinal`.
    """
    dd = geom.dd
    inventory = DRInventory(venous_beading=list(beaded))
    for q in range(4):
        points = _posterior_points(geom, rng, plan.microaneurysms[q], q)
        for x, y in points:
            _microaneurysm(canvas, geom, rng, x, y)
        inventory.microaneurysms[q] = len(points)
        points = _posterior_points(geom, rng, plan.haemorrhages[q], q, max_distance=5.5 * dd)
        for x, y in points:
            _haemorrhage(canvas, geom, rng, x, y, "dr_grade/haemorrhage")
        inventory.haemorrhages[q] = len(points)
    remaining = plan.hard_exudates
    while remaining > 0:
        # Outside the macula proper: exudates within 1 DD of the fovea would mean DME.
        centre = _posterior_points(geom, rng, 1, None, min_distance=1.9 * dd, max_distance=4.0 * dd, margin=0.6 * dd)
        if len(centre) == 0:
            break
        count = min(remaining, int(rng.integers(3, 15)))
        flecks = _exudate_cluster(canvas, geom, rng, *centre[0], count, "dr_grade/hard_exudate")
        inventory.hard_exudates += len(flecks)
        remaining -= count
    for x, y in _posterior_points(geom, rng, plan.cotton_wool_spots, None, min_distance=0.8 * dd, max_distance=4 * dd):
        draw_cotton_wool(canvas, geom, rng, x, y, "dr_grade/cotton_wool_spot")
        inventory.cotton_wool_spots += 1
    for q in range(4):
        if plan.irma[q]:
            inventory.irma[q] = _irma(canvas, geom, rng, q) > 0
    if plan.new_vessels_disc:
        inventory.new_vessels_disc = _new_vessels(canvas, geom, rng, geom.disc, 0.9 * dd, "dr_grade/new_vessels_disc")
    if plan.new_vessels_elsewhere:
        inventory.new_vessels_elsewhere = _new_vessels_elsewhere(canvas, geom, rng)
    preretinal = _preretinal_outline(geom, rng) if plan.preretinal_haemorrhage else None
    inventory.preretinal_haemorrhage = preretinal is not None
    _top_up(canvas, geom, rng, inventory, plan.grade)
    return inventory, preretinal


def _microaneurysm(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator, x: float, y: float) -> None:
    shape = ellipse(x, y, geom.dd * rng.uniform(0.022, 0.04))
    canvas.paint("ma", shape, rng.uniform(0.8, 1.0), "dr_grade/microaneurysm")


def _new_vessels_elsewhere(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator) -> bool:
    dd = geom.dd
    spot = _posterior_points(geom, rng, 1, None, min_distance=1.5 * dd, max_distance=4.5 * dd, margin=0.5 * dd)
    if len(spot) == 0:
        spot = geom.sample_points(rng, 1, margin=0.3 * dd, avoid=((geom.disc, 1.5 * dd),))
    if len(spot) == 0:
        return False
    return _new_vessels(canvas, geom, rng, tuple(spot[0]), 0.5 * dd, "dr_grade/new_vessels_elsewhere")


def _top_up(
    canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator, inventory: DRInventory, grade: int
) -> None:
    """Add the lesion that defines ``grade`` when placement fell short of it."""
    for _ in range(8):
        drawn = dr_grade_from_inventory(inventory)
        if drawn >= grade:
            return
        point = geom.sample_points(rng, 1, margin=3.0, avoid=((geom.disc, 1.3 * geom.disc_radius),))
        if grade == 1 and len(point):
            _microaneurysm(canvas, geom, rng, *point[0])
            inventory.microaneurysms[int(geom.quadrant(*point[0]))] += 1
        elif grade == 2 and len(point):
            _haemorrhage(canvas, geom, rng, *point[0], "dr_grade/haemorrhage")
            inventory.haemorrhages[int(geom.quadrant(*point[0]))] += 1
        elif grade == 3:
            for q in rng.permutation(4):
                if _irma(canvas, geom, rng, int(q), relaxed=True):
                    inventory.irma[int(q)] = True
                    break
        elif grade == 4:
            inventory.new_vessels_elsewhere |= _new_vessels_elsewhere(canvas, geom, rng)
    if dr_grade_from_inventory(inventory) != grade:
        raise RuntimeError(f"could not draw DR grade {grade} in this field (drew {inventory})")


def draw_cotton_wool(
    canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator, x: float, y: float, tag: str
) -> None:
    """A cotton-wool spot: a fluffy pale patch elongated along the nerve fibres."""
    dd = geom.dd
    shape = ellipse(x, y, dd * rng.uniform(0.14, 0.26), dd * rng.uniform(0.08, 0.14), fibre_angle(geom, x, y))
    canvas.paint("cws", shape, rng.uniform(0.65, 0.85), tag)


def flush_retinal_lesions(canvas: Canvas) -> None:
    """Blend the shared intraretinal lesion layers (cotton-wool spots, haemorrhages, microaneurysms, exudates,
    new vessels) that the DR, DME, RVO and hypertension painters draw on."""
    size = canvas.size / 512.0
    canvas.blend_layer("cws", COTTON_WOOL, blur=2.0 * size)
    canvas.blend_layer("haem_flame", HAEM_RED, blur=0.8 * size)
    canvas.blend_layer("haem", HAEM_RED, blur=0.9 * size)
    canvas.blend_layer("ma", MA_RED, blur=0.3 * size)
    canvas.blend_layer("exudate", EXUDATE_YELLOW, blur=0.35 * size)
    canvas.absorb_layer("nv", NEW_VESSEL_TRANSMISSION, blur=0.3 * size)


def _irma(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator, quadrant: int, relaxed: bool = False) -> int:
    """Up to three short tortuous intraretinal microvascular abnormalities entirely inside one quadrant."""
    dd = geom.dd
    if relaxed:
        candidates = geom.sample_points(rng, 24, quadrant=quadrant, margin=3.0)
    else:
        candidates = _posterior_points(geom, rng, 8, quadrant, min_distance=0.8 * dd, margin=0.4 * dd)
    placed = 0
    for x, y in candidates:
        length = dd * (rng.uniform(0.15, 0.3) if relaxed else rng.uniform(0.3, 0.6))
        shape = squiggle(rng, x, y, length, max(dd * 0.022, 0.7), curl=0.45)
        points = shape.data[0]
        inside = geom.inside(points[:, 0], points[:, 1], 2.0).all()
        if not (inside and (geom.quadrant(points[:, 0], points[:, 1]) == quadrant).all()):
            continue
        canvas.paint("nv", shape, rng.uniform(0.7, 0.95), "dr_grade/irma")
        placed += 1
        if placed >= 3:
            break
    return placed


def _new_vessels(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator, centre, radius: float, tag) -> bool:
    """A tangle of fine looping vessels (a 'sea fan') around ``centre``; True when any part is visible."""
    placed = False
    for _ in range(int(rng.integers(10, 22))):
        angle = rng.uniform(0, 2 * np.pi)
        r = radius * np.sqrt(rng.uniform(0, 1))
        shape = squiggle(
            rng,
            centre[0] + r * np.cos(angle),
            centre[1] + r * np.sin(angle),
            geom.dd * rng.uniform(0.3, 0.7),
            max(geom.dd * 0.016, 0.6),
            curl=0.6,
        )
        points = shape.data[0]
        if geom.inside(points[:, 0], points[:, 1], 2.0).any():
            canvas.paint("nv", shape, rng.uniform(0.7, 1.0), tag)
            placed = True
    return placed


def _preretinal_outline(geom: FundusGeometry, rng: np.random.Generator) -> Shape | None:
    dd = geom.dd
    spot = _posterior_points(geom, rng, 1, None, min_distance=1.2 * dd, max_distance=4.0 * dd, margin=1.0 * dd)
    if len(spot) == 0:
        return None
    return boat(*spot[0], dd * rng.uniform(0.5, 1.1), dd * rng.uniform(0.35, 0.7))


def draw_preretinal(canvas: Canvas, shape: Shape) -> None:
    """Paint a boat-shaped pre-retinal haemorrhage in front of everything retinal (after the other lesions)."""
    canvas.paint("preretinal", shape, 0.95, "dr_grade/preretinal_haemorrhage")
    canvas.blend_layer("preretinal", (0.58, 0.05, 0.035), blur=0.8 * canvas.size / 512.0)


def draw_dme(canvas: Canvas, geom: FundusGeometry, rng: np.random.Generator) -> int:
    """Hard exudates within one disc diameter of the fovea (clinically significant macular oedema), with a
    faint thickening haze; returns the number of exudate flecks drawn."""
    dd = geom.dd
    angle = rng.uniform(0, 2 * np.pi)
    offset = dd * rng.uniform(0.2, 0.55)
    cx, cy = geom.fovea[0] + offset * np.cos(angle), geom.fovea[1] + offset * np.sin(angle)
    tags = ("is_dme/hard_exudate", "dr_grade/hard_exudate")
    flecks = _exudate_cluster(canvas, geom, rng, cx, cy, int(rng.integers(8, 30)), tags)
    inside = [p for p in flecks if np.hypot(p[0] - geom.fovea[0], p[1] - geom.fovea[1]) <= dd]
    while len(inside) < 3:  # guarantee the definition: exudates within 1 DD of the fovea
        x, y = _posterior_points(geom, rng, 1, None, max_distance=0.9 * dd, margin=2.0)[0]
        canvas.paint("exudate", blob(rng, x, y, dd * rng.uniform(0.025, 0.05), 0.4), 0.9, tags)
        flecks.append((x, y))
        inside.append((x, y))
    canvas.paint("dme_haze", ellipse(*geom.fovea, dd * rng.uniform(0.7, 1.0)), rng.uniform(0.15, 0.3))
    canvas.blend_layer("dme_haze", (0.95, 0.75, 0.55), blur=0.3 * dd)
    return len(flecks)
