"""The vessel tree in one image: placement, per-image edits by findings, and drawing.

A pooled tree (:mod:`.vessel_tree`) is placed by a similarity transform that carries its canonical fovea onto
the image's fovea (mirrored for the left eye). Findings edit per-point width factors and lateral shifts
(arteriolar narrowing, venous dilation, tortuosity and beading, AV nicking) before the tree is drawn: veins and
arteries darken the image by their own transmission, thin vessels less than wide ones, and wide arteries carry a
central light reflex.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import ImageDraw

from .canvas import SUPERSAMPLE, Canvas
from .geometry import FundusGeometry
from .vessel_tree import (
    CANONICAL_FOVEA,
    FOVEAL_AVASCULAR_RADIUS,
    STEP,
    TREE_POOL_SIZE,
    VesselTree,
    grow_tree,
)

__all__ = [
    "CANONICAL_FOVEA",
    "FOVEAL_AVASCULAR_RADIUS",
    "STEP",
    "TREE_POOL_SIZE",
    "VesselLayout",
    "VesselTree",
    "draw_vessels",
    "grow_tree",
    "layout_vessels",
]


@dataclass
class VesselLayout:
    """One tree placed in one image, with per-point width factors and lateral shifts that findings may edit."""

    tree: VesselTree
    geom: FundusGeometry
    matrix: np.ndarray  # (2, 2) local DD -> image pixels (a similarity, mirrored for the left eye)
    offset: np.ndarray  # (2,) image position of the disc centre
    width_scale: np.ndarray  # (P,)
    shift: np.ndarray  # (P,) lateral displacement in DD
    vein_transmission: tuple[float, float, float] = (0.70, 0.30, 0.34)
    artery_transmission: tuple[float, float, float] = (0.85, 0.50, 0.50)
    reflex_strength: float = 0.18

    @property
    def scale(self) -> float:
        """Pixels per DD of the tree frame in this image."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix))))

    def to_image(self, local: np.ndarray) -> np.ndarray:
        """Tree-frame points (DD) to image pixels."""
        return (np.asarray(local, np.float32) @ self.matrix.T + self.offset).astype(np.float32)

    def centres(self) -> np.ndarray:
        """Image coordinates of every centre-line point, (P, 2)."""
        return self.to_image(self.tree.centre + self.tree.normal * self.shift[:, None])

    def half_widths(self) -> np.ndarray:
        """Half widths in pixels of every centre-line point, (P,)."""
        return self.tree.half_width * self.width_scale * self.scale

    def vessel_points(self, index: int) -> np.ndarray:
        """Image coordinates of one vessel's centre line."""
        a, b = self.tree.start[index], self.tree.start[index + 1]
        return self.centres()[a:b]

    def visible_vessels(self, margin: float = 0.0) -> np.ndarray:
        """Per vessel, how many of its points lie in the visible field."""
        pts = self.centres()
        inside = self.geom.inside(pts[:, 0], pts[:, 1], margin).astype(np.int64)
        return np.add.reduceat(inside, self.tree.start[:-1])


def layout_vessels(geom: FundusGeometry, rng: np.random.Generator) -> VesselLayout:
    """Pick a tree from the pool and place it so its canonical fovea lands on this image's fovea."""
    tree = grow_tree(int(rng.integers(TREE_POOL_SIZE)))
    fovea_local = np.array(
        [-(geom.fovea[0] - geom.disc[0]) * geom.nasal / geom.dd, (geom.fovea[1] - geom.disc[1]) / geom.dd]
    )
    scale = np.linalg.norm(fovea_local) / np.linalg.norm(CANONICAL_FOVEA)
    turn = np.arctan2(fovea_local[1], fovea_local[0]) - np.arctan2(CANONICAL_FOVEA[1], CANONICAL_FOVEA[0])
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    to_image = np.diag([-geom.nasal * geom.dd, geom.dd])
    points = len(tree.centre)
    return VesselLayout(
        tree=tree,
        geom=geom,
        matrix=(to_image @ rotation * scale).astype(np.float32),
        offset=np.array(geom.disc, np.float32),
        width_scale=np.full(points, rng.uniform(0.9, 1.12), np.float32),
        shift=np.zeros(points, np.float32),
        vein_transmission=tuple(np.array([0.70, 0.30, 0.34]) * rng.uniform(0.93, 1.07)),
        artery_transmission=tuple(np.clip(np.array([0.85, 0.50, 0.50]) * rng.uniform(0.95, 1.05), 0, 1)),
    )


def draw_vessels(canvas: Canvas, layout: VesselLayout) -> None:
    """Rasterise the placed tree: veins, then arteries, each darkening the image, plus the central light reflex."""
    tree = layout.tree
    centres = layout.centres()
    half = layout.half_widths()
    normals = tree.normal @ layout.matrix.T
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-9
    offsets = normals * half[:, None]
    left = (centres + offsets) * SUPERSAMPLE
    right = (centres - offsets) * SUPERSAMPLE
    core = 0.2 * offsets
    core_left = (centres + core) * SUPERSAMPLE
    core_right = (centres - core) * SUPERSAMPLE
    size = canvas.size
    on_image = ((centres >= -4) & (centres < size + 4)).all(axis=1).astype(np.int64)
    counts = np.add.reduceat(on_image, tree.start[:-1])
    draws = {True: ImageDraw.Draw(canvas.layer("vein").image), False: ImageDraw.Draw(canvas.layer("artery").image)}
    reflex = ImageDraw.Draw(canvas.layer("reflex").image)
    off_disc = int(0.7 / STEP)
    for index in np.nonzero(counts)[0]:
        a, b = tree.start[index], tree.start[index + 1]
        if b - a < 2:
            continue
        outline = left[a:b].ravel().tolist() + right[a:b][::-1].ravel().tolist()
        # Thin vessels hold less blood: they absorb less as well as covering less.
        calibre = float(half[a]) / (1.6 * size / 512.0)
        draws[bool(tree.is_vein[index])].polygon(outline, fill=int(255 * min(1.0, 0.4 + 0.6 * calibre)))
        first = a + (off_disc if tree.depth[index] == 0 else 0)
        if not tree.is_vein[index] and first + 2 < b and half[first] >= 1.2:
            stop = first + int(np.argmax(half[first:b] < 1.2)) if half[b - 1] < 1.2 else b
            if stop - first >= 2:
                outline = core_left[first:stop].ravel().tolist() + core_right[first:stop][::-1].ravel().tolist()
                reflex.polygon(outline, fill=255)
    canvas.absorb_layer("vein", layout.vein_transmission, blur=0.0)
    canvas.absorb_layer("artery", layout.artery_transmission, blur=0.0)
    canvas.blend_layer("reflex", (1.0, 0.72, 0.58), blur=0.0, opacity=layout.reflex_strength)
