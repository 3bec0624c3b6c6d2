"""Growing retinal vessel trees: arteries and veins leaving the disc along the four arcades, branching,
tapering and winding, with the foveal avascular zone and the horizontal raphe respected.

Trees are grown in a disc-centred frame in disc-diameter (DD) units (u temporal, v inferior) around a canonical
fovea. Growing one costs tens of milliseconds, so each process keeps a pool of :data:`TREE_POOL_SIZE` trees, built
lazily from fixed seeds (identical in every process); :mod:`.vessels` places one in each image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

CANONICAL_FOVEA = np.array([2.55, 0.28], np.float32)
FOVEAL_AVASCULAR_RADIUS = 0.3
TREE_POOL_SIZE = 192
STEP = 0.08
MIN_WIDTH = 0.012
REACH = 13.0
ARCADES = ("ST", "IT", "SN", "IN", "PM", "NA")  # four arcades, papillomacular, nasal radial
_TREE_SEED = 0xA4CADE


@dataclass(frozen=True)
class VesselTree:
    """All vessels of one tree as flat arrays; vessel ``i`` owns points ``start[i]:start[i + 1]``."""

    centre: np.ndarray  # (P, 2) DD
    normal: np.ndarray  # (P, 2) unit normals
    half_width: np.ndarray  # (P,) DD
    arclength: np.ndarray  # (P,) DD from the vessel's origin
    start: np.ndarray  # (V + 1,)
    is_vein: np.ndarray  # (V,) bool
    arcade: np.ndarray  # (V,) index into ARCADES
    depth: np.ndarray  # (V,)
    root: np.ndarray  # (V,) index of the trunk the vessel descends from
    root_arclength: np.ndarray  # (V,) where (DD along the trunk) the vessel's lineage leaves the trunk
    crossings: np.ndarray  # (C, 3): vein point index, artery point index, depth of the deeper vessel

    @property
    def vessel_of_point(self) -> np.ndarray:
        """Index of the vessel that owns each centre-line point, (P,)."""
        return np.repeat(np.arange(len(self.is_vein)), np.diff(self.start))


def _bezier(ctrl: np.ndarray, count: int = 400) -> np.ndarray:
    t = np.linspace(0, 1, count)[:, None]
    return (
        (1 - t) ** 3 * ctrl[0] + 3 * (1 - t) ** 2 * t * ctrl[1] + 3 * (1 - t) * t**2 * ctrl[2] + t**3 * ctrl[3]
    ).astype(np.float32)


def _resample(points: np.ndarray, step: float = STEP) -> np.ndarray:
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    grid = np.arange(0.0, s[-1], step)
    return np.stack([np.interp(grid, s, points[:, 0]), np.interp(grid, s, points[:, 1])], 1).astype(np.float32)


def _normals(points: np.ndarray) -> np.ndarray:
    if len(points) < 2:
        return np.tile(np.array([[0.0, 1.0]], np.float32), (len(points), 1))
    tangent = np.gradient(points, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-9
    return np.stack([-tangent[:, 1], tangent[:, 0]], 1).astype(np.float32)


def _wiggle(points: np.ndarray, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Displace a path along its normals by a sum of random sines (tortuosity)."""
    s = np.arange(len(points)) * STEP
    offset = np.zeros(len(points), np.float32)
    for _ in range(3):
        wavelength = rng.uniform(0.8, 3.0)
        offset += rng.uniform(0.3, 1.0) * amplitude * np.sin(2 * np.pi * s / wavelength + rng.uniform(0, 6.3))
    return points + _normals(points) * offset[:, None]


def _walk(
    rng: np.random.Generator,
    origin: np.ndarray,
    heading: float,
    length: float,
    wander: float,
    *,
    target: np.ndarray | None = None,
    pull: float = 0.0,
) -> np.ndarray:
    """A smooth random path of ``length`` DD; its heading relaxes (rate ``pull`` per step) towards pointing
    away from the disc, or towards ``target`` when given."""
    count = max(int(length / STEP), 2)
    noise = rng.normal(0, wander, count)
    points = np.empty((count, 2), np.float32)
    x, y = float(origin[0]), float(origin[1])
    for i in range(count):
        if pull:
            goal = math.atan2(y, x) if target is None else math.atan2(target[1] - y, target[0] - x)
            heading += pull * ((goal - heading + math.pi) % (2 * math.pi) - math.pi)
        heading += noise[i]
        x += STEP * math.cos(heading)
        y += STEP * math.sin(heading)
        points[i] = (x, y)
    return points


def _clip_path(
    points: np.ndarray, arcade: int | None = None, fovea_stop: float = FOVEAL_AVASCULAR_RADIUS
) -> np.ndarray:
    """Cut a path where it nears the fovea, leaves the reachable retina or (arcade branches) crosses the
    horizontal raphe temporal to the disc."""
    to_fovea = np.linalg.norm(points - CANONICAL_FOVEA, axis=1)
    stop = (to_fovea < fovea_stop) | (np.linalg.norm(points, axis=1) > REACH)
    fu, fv = CANONICAL_FOVEA
    if arcade == 0:
        stop |= (points[:, 1] > fv - 0.1) & (points[:, 0] > 0.8)
    elif arcade == 1:
        stop |= (points[:, 1] < fv + 0.1) & (points[:, 0] > 0.8)
    elif arcade == 2:
        stop |= points[:, 1] > 0.3
    elif arcade == 3:
        stop |= points[:, 1] < -0.3
    stop[0] = False
    return points[: int(np.argmax(stop))] if stop.any() else points


@dataclass
class _Growing:
    points: np.ndarray
    widths: np.ndarray
    is_vein: bool
    arcade: int
    depth: int
    root: int = 0
    root_arclength: float = 0.0
    children: list = field(default_factory=list)


def _trunks(rng: np.random.Generator) -> list[_Growing]:
    fu, fv = CANONICAL_FOVEA
    trunks = []
    for is_vein in (True, False):
        base_width = rng.uniform(0.075, 0.09) if is_vein else rng.uniform(0.055, 0.066)
        for arcade, sign in ((0, -1.0), (1, 1.0)):
            ctrl = np.array(
                [
                    [0.05 if is_vein else -0.03, 0.0],
                    [rng.uniform(0.0, 0.5), sign * rng.uniform(1.3, 1.9) + 0.1],
                    [fu + rng.normal(0, 0.35), fv + sign * rng.uniform(1.8, 2.4)],
                    [fu + rng.uniform(8.0, 10.0), fv + sign * rng.uniform(1.0, 4.0)],
                ],
                np.float32,
            )
            if not is_vein:  # arteries run beside their veins and cross them
                ctrl[1, 0] += rng.choice([-1, 1]) * rng.uniform(0.15, 0.4)
                ctrl[2, 1] += sign * rng.choice([-1, 1]) * rng.uniform(0.15, 0.45)
            path = _wiggle(_resample(_bezier(ctrl)), rng, rng.uniform(0.01, 0.035))
            trunks.append(_taper(path, base_width, arcade, is_vein, rng))
        for arcade, sign in ((2, -1.0), (3, 1.0)):
            ctrl = np.array(
                [
                    [0.02 if is_vein else -0.06, 0.0],
                    [rng.uniform(-0.4, 0.1), sign * rng.uniform(1.0, 1.6)],
                    [rng.uniform(-2.0, -0.8), sign * rng.uniform(2.2, 3.2)],
                    [rng.uniform(-7.0, -4.0), sign * rng.uniform(6.0, 9.0)],
                ],
                np.float32,
            )
            path = _wiggle(_resample(_bezier(ctrl)), rng, rng.uniform(0.01, 0.035))
            trunks.append(_taper(path, base_width * rng.uniform(0.75, 0.9), arcade, is_vein, rng))
        for _ in range(int(rng.integers(1, 3))):  # small papillomacular vessels
            heading = np.arctan2(fv - 0.0, fu - 0.45) + rng.normal(0, 0.35)
            origin = np.array([0.45, rng.normal(0, 0.15)])
            path = _walk(rng, origin, heading, 2.4, 0.05, target=CANONICAL_FOVEA, pull=0.03)
            path = _clip_path(path, fovea_stop=rng.uniform(0.5, 0.9))
            trunks.append(_taper(path, base_width * rng.uniform(0.3, 0.45), 4, is_vein, rng))
        for _ in range(int(rng.integers(1, 3))):  # nasal radial vessels
            heading = np.pi + rng.normal(0, 0.35)
            path = _walk(rng, np.array([-0.4, rng.normal(0, 0.15)]), heading, rng.uniform(5, 9), 0.04, pull=0.03)
            trunks.append(_taper(path, base_width * rng.uniform(0.35, 0.55), 5, is_vein, rng))
    return trunks


def _taper(path: np.ndarray, width: float, arcade: int, is_vein: bool, rng: np.random.Generator, depth: int = 0):
    end = rng.uniform(0.3, 0.5)
    widths = width * np.linspace(1.0, end, len(path)).astype(np.float32)
    return _Growing(path, widths, is_vein, arcade, depth)


def _branches(parent: _Growing, rng: np.random.Generator) -> list[_Growing]:
    children = []
    s = rng.uniform(0.3, 0.8)
    temporal_arcade = parent.arcade in (0, 1) and parent.depth == 0
    while True:
        s += rng.uniform(0.5, 1.2) if parent.depth == 0 else rng.uniform(0.35, 0.9)
        index = int(s / STEP)
        if index >= len(parent.points) - 3:
            break
        width = float(parent.widths[index]) * rng.uniform(0.45, 0.75)
        if width < MIN_WIDTH:
            break
        origin = parent.points[index]
        tangent = parent.points[index + 1] - parent.points[index - 1]
        angle = float(np.arctan2(tangent[1], tangent[0]))
        to_fovea = CANONICAL_FOVEA - origin
        fovea_distance = float(np.linalg.norm(to_fovea))
        if temporal_arcade and fovea_distance < 3.4 and rng.random() < 0.6:
            heading = float(np.arctan2(to_fovea[1], to_fovea[0])) + rng.normal(0, 0.3)
            width *= rng.uniform(0.5, 0.75)
            path = _walk(rng, origin, heading, fovea_distance, 0.05, target=CANONICAL_FOVEA, pull=0.05)
            path = _clip_path(path, fovea_stop=rng.uniform(0.45, 0.9))
        else:
            heading = angle + rng.choice([-1.0, 1.0]) * rng.uniform(0.45, 1.1)
            length = float(np.clip(width / 0.08 * rng.uniform(7, 12), 0.8, 7.0))
            wander = 0.05 + 0.03 * (parent.depth >= 1)
            path = _clip_path(_walk(rng, origin, heading, length, wander, pull=0.04), parent.arcade)
        if len(path) < 4:
            continue
        child = _Growing(
            path,
            width * np.linspace(1.0, 0.45, len(path)).astype(np.float32),
            parent.is_vein,
            parent.arcade,
            parent.depth + 1,
            parent.root,
            index * STEP if parent.depth == 0 else parent.root_arclength,
        )
        if child.depth < 4:
            child.children = _branches(child, rng)
        children.append(child)
    return children


def _flatten(trunks: list[_Growing]) -> list[_Growing]:
    out = []
    stack = list(reversed(trunks))
    while stack:
        vessel = stack.pop()
        out.append(vessel)
        stack.extend(reversed(vessel.children))
    return out


def _crossings(vessels: list[_Growing], start: np.ndarray) -> np.ndarray:
    """Points where a main artery crosses a main vein (segment intersections), for AV nicking.

    Segments are bucketed on a 0.1 DD grid so only nearby artery/vein segment pairs are tested.
    """
    cell = 0.1
    segments = {True: [], False: []}
    for i, vessel in enumerate(vessels):
        if vessel.depth <= 1 and len(vessel.points) >= 2:
            index = np.arange(len(vessel.points) - 1)
            segments[vessel.is_vein].append((np.full(len(index), i), index))
    if not segments[True] or not segments[False]:
        return np.zeros((0, 3), np.int64)

    def gather(kind: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        owner = np.concatenate([o for o, _ in segments[kind]])
        index = np.concatenate([k for _, k in segments[kind]])
        p0 = np.stack([vessels[o].points[k] for o, k in zip(owner, index, strict=True)])
        p1 = np.stack([vessels[o].points[k + 1] for o, k in zip(owner, index, strict=True)])
        return owner, index, p0, p1

    v_owner, v_index, v0, v1 = gather(True)
    a_owner, a_index, a0, a1 = gather(False)
    buckets: dict[tuple[int, int], list[int]] = {}
    for j, (x, y) in enumerate(np.floor((a0 + a1) / 2 / cell).astype(np.int64).tolist()):
        buckets.setdefault((x, y), []).append(j)
    pairs = []
    for i, (x, y) in enumerate(np.floor((v0 + v1) / 2 / cell).astype(np.int64).tolist()):
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                pairs.extend((i, j) for j in buckets.get((x + dx, y + dy), ()))
    if not pairs:
        return np.zeros((0, 3), np.int64)
    vi, ai = np.array(pairs).T
    d1, d2 = v1[vi] - v0[vi], a1[ai] - a0[ai]
    diff = a0[ai] - v0[vi]
    denom = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    safe = np.where(np.abs(denom) > 1e-9, denom, 1.0)
    t = (diff[:, 0] * d2[:, 1] - diff[:, 1] * d2[:, 0]) / safe
    u = (diff[:, 0] * d1[:, 1] - diff[:, 1] * d1[:, 0]) / safe
    hit = (np.abs(denom) > 1e-9) & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)
    hit &= np.linalg.norm(v0[vi], axis=1) > 0.8  # not on the disc itself
    rows = []
    for i, j in zip(vi[hit], ai[hit], strict=True):
        vein, artery = v_owner[i], a_owner[j]
        depth = max(vessels[vein].depth, vessels[artery].depth)
        rows.append((start[vein] + v_index[i], start[artery] + a_index[j], depth))
    return np.array(rows, np.int64).reshape(-1, 3)


@lru_cache(maxsize=TREE_POOL_SIZE)
def grow_tree(variant: int) -> VesselTree:
    """Grow tree number ``variant`` of the pool (deterministic, identical in every process)."""
    rng = np.random.default_rng(np.random.SeedSequence([_TREE_SEED, variant]))
    trunks = _trunks(rng)
    for index, trunk in enumerate(trunks):
        trunk.root = index
        trunk.children = _branches(trunk, rng)
    vessels = _flatten(trunks)
    lengths = np.array([len(v.points) for v in vessels])
    start = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    arclength = np.concatenate([np.arange(n, dtype=np.float32) * STEP for n in lengths])
    return VesselTree(
        centre=np.concatenate([v.points for v in vessels]).astype(np.float32),
        normal=np.concatenate([_normals(v.points) for v in vessels]).astype(np.float32),
        half_width=np.concatenate([v.widths / 2 for v in vessels]).astype(np.float32),
        arclength=arclength,
        start=start,
        is_vein=np.array([v.is_vein for v in vessels]),
        arcade=np.array([v.arcade for v in vessels]),
        depth=np.array([v.depth for v in vessels]),
        root=np.array([v.root for v in vessels]),
        root_arclength=np.array([v.root_arclength for v in vessels], np.float32),
        crossings=_crossings(vessels, start),
    )
