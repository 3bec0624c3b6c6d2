"""Where things are in one synthetic photograph: the field of view, the optic disc, the fovea and the quadrants.

Conventions (image coordinates, x to the right, y down, superior retina at the top as in a standard upright
fundus photograph, viewed by an examiner facing the patient):

* right eye (OD): the optic disc is on the viewer's right of the fovea (nasal = +x); left eye (OS): on the left;
* the fovea lies about 2.5 disc diameters (DD) temporal to the disc centre and slightly below it;
* quadrants (used by the ICDR 4-2-1 rule) are split by the horizontal and vertical lines through the fovea:
  superotemporal, inferotemporal, superonasal, inferonasal.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

QUADRANTS: tuple[str, ...] = ("superotemporal", "inferotemporal", "superonasal", "inferonasal")
# Field-of-view shapes of real cameras and their shares: a round 45-degree field; a larger field clipped at the top
# and bottom by a 3:2 sensor; a small field in a wide black frame (CSDI-like); a field larger than the frame, cut on
# every side (partial); a field shifted off the frame's centre and cut by one or two borders.
FIELD_SHAPES: dict[str, float] = {"round": 0.40, "clipped": 0.27, "small": 0.10, "partial": 0.10, "off_centre": 0.13}
NOTCH_SHAPES: tuple[str, ...] = ("tab", "triangle")


@dataclass(frozen=True)
class FundusGeometry:
    """Field of view and landmarks of one image, in pixels."""

    size: int
    eye: str
    centre: tuple[float, float]
    radius: float
    aspect: float
    clip: float | None
    disc: tuple[float, float]
    disc_radius: float
    disc_aspect: float
    fovea: tuple[float, float]
    notch_angle: float | None = None
    notch_shape: str = "tab"
    shape: str = "round"

    @property
    def nasal(self) -> int:
        """+1 when nasal is towards +x (right eye), -1 otherwise."""
        return 1 if self.eye == "right" else -1

    @property
    def dd(self) -> float:
        """One disc diameter in pixels (the natural unit of fundus distances)."""
        return 2.0 * self.disc_radius

    def to_image(self, local: np.ndarray) -> np.ndarray:
        """Map disc-centred points in DD units (u temporal, v inferior) to image pixels, shape (n, 2)."""
        local = np.asarray(local, dtype=np.float32)
        out = np.empty_like(local)
        out[..., 0] = self.disc[0] - self.nasal * local[..., 0] * self.dd
        out[..., 1] = self.disc[1] + local[..., 1] * self.dd
        return out

    def inside(self, x: np.ndarray, y: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Whether image points lie in the visible field, at least ``margin`` pixels from its edge."""
        x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
        dx, dy = x - self.centre[0], (y - self.centre[1]) / self.aspect
        ok = dx * dx + dy * dy <= (self.radius - margin) ** 2
        if self.clip is not None:
            ok &= np.abs(y - self.centre[1]) <= self.clip - margin
        return ok & (x >= margin) & (y >= margin) & (x < self.size - margin) & (y < self.size - margin)

    def quadrant(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Quadrant index (see :data:`QUADRANTS`) of image points, split at the fovea."""
        inferior = np.asarray(y) >= self.fovea[1]
        nasal = (np.asarray(x) - self.fovea[0]) * self.nasal > 0
        return (inferior.astype(np.int64) + 2 * nasal.astype(np.int64)).astype(np.int64)

    @cached_property
    def field_alpha(self) -> np.ndarray:
        """Soft (anti-aliased) mask of the field of view, float32 in [0, 1], shape (size, size)."""
        ys, xs = np.ogrid[: self.size, : self.size]
        ys = ys.astype(np.float32)
        xs = xs.astype(np.float32)
        dist = np.sqrt((xs - self.centre[0]) ** 2 + ((ys - self.centre[1]) / self.aspect) ** 2)
        alpha = np.clip(self.radius - dist + 0.5, 0.0, 1.0)
        if self.clip is not None:
            alpha *= np.clip(self.clip - np.abs(ys - self.centre[1]) + 0.5, 0.0, 1.0)
        if self.notch_angle is not None:
            nx = self.centre[0] + self.radius * np.cos(self.notch_angle)
            ny = self.centre[1] + self.radius * self.aspect * np.sin(self.notch_angle)
            alpha = np.maximum(alpha, self._notch_alpha(xs, ys, nx, ny))
        return alpha.astype(np.float32)

    def _notch_alpha(self, xs: np.ndarray, ys: np.ndarray, nx: float, ny: float) -> np.ndarray:
        """The camera's orientation mark on the rim: a small round tab or a triangle pointing outwards."""
        if self.notch_shape == "tab":
            return np.clip(0.035 * self.radius - np.sqrt((xs - nx) ** 2 + (ys - ny) ** 2) + 0.5, 0, 1)
        # Triangle: distance along the outward normal must stay below a height that shrinks sideways.
        normal = np.array([np.cos(self.notch_angle), np.sin(self.notch_angle)], np.float32)
        along = (xs - nx) * normal[0] + (ys - ny) * normal[1]
        across = np.abs(-(xs - nx) * normal[1] + (ys - ny) * normal[0])
        height = 0.05 * self.radius
        inside = np.minimum(height * (1 - across / (0.04 * self.radius)) - along, along + height)
        return np.clip(inside + 0.5, 0, 1)

    @cached_property
    def field_mask(self) -> np.ndarray:
        """Boolean mask of the visible retina (pixels at least half inside the field)."""
        return self.field_alpha >= 0.5

    def quadrant_visible(self, margin: float = 0.0) -> np.ndarray:
        """Fraction of each quadrant's pixels (of the whole image) that lie in the visible field, shape (4,)."""
        step = max(self.size // 64, 1)
        ys, xs = np.mgrid[0 : self.size : step, 0 : self.size : step].astype(np.float32)
        ok = self.inside(xs, ys, margin)
        quads = self.quadrant(xs, ys)
        return np.array([(ok & (quads == q)).mean() for q in range(4)])

    def sample_points(
        self,
        rng: np.random.Generator,
        count: int,
        *,
        quadrant: int | None = None,
        around: tuple[float, float] | None = None,
        min_distance: float = 0.0,
        max_distance: float | None = None,
        margin: float = 2.0,
        avoid: tuple[tuple[tuple[float, float], float], ...] = (),
    ) -> np.ndarray:
        """Up to ``count`` random visible points, shape (n, 2), by rejection sampling.

        ``around``/``min_distance``/``max_distance`` restrict points to an annulus (pixels); ``avoid`` is a tuple of
        (centre, radius) discs to keep out of (e.g. the disc or the fovea); ``quadrant`` restricts to one quadrant.
        """
        if count <= 0:
            return np.zeros((0, 2), np.float32)
        found: list[np.ndarray] = []
        have = 0
        for _ in range(40):
            batch = max(4 * (count - have), 64)
            if around is None:
                pts = rng.uniform(0, self.size, (batch, 2)).astype(np.float32)
            else:
                top = max_distance if max_distance is not None else 2.0 * self.radius
                # Uniform over the annulus area.
                r = np.sqrt(rng.uniform(min_distance**2, top**2, batch))
                theta = rng.uniform(0, 2 * np.pi, batch)
                pts = np.stack([around[0] + r * np.cos(theta), around[1] + r * np.sin(theta)], 1).astype(np.float32)
            ok = self.inside(pts[:, 0], pts[:, 1], margin)
            if around is not None:
                dist = np.hypot(pts[:, 0] - around[0], pts[:, 1] - around[1])
                ok &= dist >= min_distance
                if max_distance is not None:
                    ok &= dist <= max_distance
            if quadrant is not None:
                ok &= self.quadrant(pts[:, 0], pts[:, 1]) == quadrant
            for (ax, ay), radius in avoid:
                ok &= np.hypot(pts[:, 0] - ax, pts[:, 1] - ay) > radius
            found.append(pts[ok])
            have += int(ok.sum())
            if have >= count:
                break
        return np.concatenate(found)[:count]


def sample_geometry(
    rng: np.random.Generator,
    size: int,
    eye: str,
    *,
    disc_in_field: bool = True,
    macula_in_field: bool = True,
) -> FundusGeometry:
    """Random camera framing and landmarks for one eye.

    Most images are macula-centred 45-degree photographs (round field, or clipped at the top and bottom like a 3:2
    sensor); ``disc_in_field=False`` aims the camera temporally so the disc falls outside the field,
    ``macula_in_field=False`` aims it nasally so the fovea does.
    """
    shape = str(rng.choice(list(FIELD_SHAPES), p=list(FIELD_SHAPES.values())))
    centre, radius, clip = _sample_field(rng, size, shape)
    aspect = float(rng.uniform(0.975, 1.025))
    disc_radius = radius * rng.uniform(0.078, 0.096)
    dd = 2 * disc_radius
    nasal = 1 if eye == "right" else -1
    to_disc = np.array([nasal * dd * rng.uniform(2.3, 2.8), -dd * rng.uniform(0.1, 0.45)])
    span = float(np.hypot(*to_disc))
    unit = to_disc / span
    if not disc_in_field:
        disc = np.array(centre) + unit * (radius + dd * rng.uniform(0.7, 1.0))
        fovea = disc - to_disc
    elif not macula_in_field:
        fovea = np.array(centre) - unit * (radius + dd * rng.uniform(0.8, 1.1))
        disc = fovea + to_disc
    else:
        # Between macula-centred (0) and half-way to disc-centred (0.55).
        towards_disc = rng.uniform(-0.1, 0.55)
        fovea = np.array(centre) - towards_disc * to_disc + rng.normal(0, 0.25 * dd, 2)
        disc = fovea + to_disc
    # The camera's orientation mark: a tab at the top right or a triangle at the lower right (Zeiss-like).
    notch_shape = NOTCH_SHAPES[int(rng.random() < 0.4)]
    notch = float((rng.uniform(-0.30, -0.20) if notch_shape == "tab" else rng.uniform(0.08, 0.2)) * np.pi)
    geom = FundusGeometry(
        size=size,
        eye=eye,
        centre=(float(centre[0]), float(centre[1])),
        radius=float(radius),
        aspect=aspect,
        clip=None if clip is None else float(clip),
        disc=(float(disc[0]), float(disc[1])),
        disc_radius=float(disc_radius),
        disc_aspect=float(rng.uniform(1.04, 1.14)),
        fovea=(float(fovea[0]), float(fovea[1])),
        notch_angle=notch if rng.random() < 0.35 else None,
        notch_shape=notch_shape,
        shape=shape,
    )
    if shape != "round" and not _landmarks_fit(geom, disc_in_field, macula_in_field):
        # A shifted or cut field hid a landmark the labels need: frame this eye with the ordinary round field.
        return replace(geom, **_round_field(geom, size))
    return geom


def _sample_field(rng: np.random.Generator, size: int, shape: str) -> tuple[np.ndarray, float, float | None]:
    """Centre, radius and top/bottom clip (or None) of the field for one of :data:`FIELD_SHAPES`."""
    jitter = rng.normal(0, 0.006 * size, 2)
    centre = np.array([size / 2, size / 2]) + jitter
    clip = None
    if shape == "clipped":
        radius = size * rng.uniform(0.49, 0.53)
        clip = min(radius * rng.uniform(0.80, 0.90), size / 2 - 2)
    elif shape == "small":
        radius = size * rng.uniform(0.30, 0.40)
    elif shape == "partial":
        radius = size * rng.uniform(0.53, 0.6)
    elif shape == "off_centre":
        radius = size * rng.uniform(0.42, 0.47)
        angle = rng.uniform(0, 2 * np.pi)
        centre += size * rng.uniform(0.05, 0.1) * np.array([np.cos(angle), np.sin(angle)])
    else:
        radius = size * rng.uniform(0.44, 0.485)
    return centre, float(radius), None if clip is None else float(clip)


def _landmarks_fit(geom: FundusGeometry, disc_in_field: bool, macula_in_field: bool) -> bool:
    """Whether every landmark the labels call visible lies well inside the visible field."""
    disc_ok = not disc_in_field or bool(geom.inside(*geom.disc, margin=1.3 * geom.disc_radius))
    fovea_ok = not macula_in_field or bool(geom.inside(*geom.fovea, margin=geom.dd))
    return disc_ok and fovea_ok


def _round_field(geom: FundusGeometry, size: int) -> dict[str, object]:
    """The same eye reframed in a centred round field of the same scale (landmarks move with the centre)."""
    radius = float(np.clip(geom.radius, 0.44 * size, 0.47 * size))
    scale = radius / geom.radius
    centre = np.array([size / 2, size / 2])

    def move(point: tuple[float, float]) -> tuple[float, float]:
        moved = centre + (np.array(point) - np.array(geom.centre)) * scale
        return float(moved[0]), float(moved[1])

    return {
        "centre": (float(centre[0]), float(centre[1])),
        "radius": float(radius),
        "clip": None,
        "disc": move(geom.disc),
        "fovea": move(geom.fovea),
        "disc_radius": geom.disc_radius * scale,
        "shape": "round",
    }
