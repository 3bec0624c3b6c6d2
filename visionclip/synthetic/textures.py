"""Static noise textures, generated once per process and reused by every image.

Textures depend only on (kind, size, variant), never on the sample being drawn, so every worker process builds
identical copies; an image picks a variant and a flip/rotation from its own random stream.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

TEXTURE_VARIANTS = 6
_TEXTURE_SEED = 0x5F0D05


def _rng(kind: str, size: int, variant: int) -> np.random.Generator:
    kind_id = int.from_bytes(kind.encode()[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng(np.random.SeedSequence([_TEXTURE_SEED, kind_id, size, variant]))


def _upsampled_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """White noise on a ``cells`` x ``cells`` grid, smoothly upsampled to ``size`` x ``size``."""
    grid = rng.standard_normal((cells + 3, cells + 3)).astype(np.float32)
    up = Image.fromarray(grid, mode="F").resize(
        (size, size), Image.Resampling.BICUBIC, box=(1, 1, cells + 1, cells + 1)
    )
    return np.asarray(up, dtype=np.float32)


def _normalise(field: np.ndarray) -> np.ndarray:
    field = field - field.mean()
    return (field / (field.std() + 1e-6)).astype(np.float32)


@lru_cache(maxsize=64)
def fractal_noise(size: int, variant: int, coarsest: int = 4, octaves: int = 5) -> np.ndarray:
    """Zero-mean, unit-variance multi-octave noise (1/f-like): the mottled look of the choroid."""
    rng = _rng("fractal", size * 100 + coarsest, variant)
    field = np.zeros((size, size), np.float32)
    cells, amplitude = coarsest, 1.0
    for _ in range(octaves):
        field += amplitude * _upsampled_noise(rng, size, min(cells, size))
        cells, amplitude = cells * 2, amplitude * 0.6
    return _normalise(field)


@lru_cache(maxsize=64)
def choroidal_network(size: int, variant: int) -> np.ndarray:
    """A reticular pattern in [0, 1]: 1 on broad choroidal vessels, 0 in the dark spaces between them.

    Built from the zero crossings of band-pass noise, which form a network of curved, branching stripes like the
    large choroidal vessels seen in a tessellated fundus.
    """
    rng = _rng("choroid", size, variant)
    cells = 24
    band = _upsampled_noise(rng, size, cells) + 0.35 * _upsampled_noise(rng, size, cells * 2)
    band /= band.std() + 1e-6
    stripes = np.exp(-((band / 0.6) ** 2))
    return stripes.astype(np.float32)


@lru_cache(maxsize=16)
def pixel_noise(size: int, variant: int) -> np.ndarray:
    """Unit-variance Gaussian sensor noise with a little spatial correlation (demosaicing)."""
    rng = _rng("pixel", size, variant)
    noise = rng.standard_normal((size, size, 3)).astype(np.float32)
    noise[1:] += 0.35 * noise[:-1]
    noise[:, 1:] += 0.35 * noise[:, :-1]
    return noise / noise.std()


def pick(texture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the eight flips/rotations of a square texture (a view, no copy)."""
    turn = int(rng.integers(8))
    view = np.rot90(texture, turn % 4, axes=(0, 1))
    return view[:, ::-1] if turn >= 4 else view


def random_fractal(size: int, rng: np.random.Generator, coarsest: int = 4) -> np.ndarray:
    """A random variant and orientation of :func:`fractal_noise`."""
    return pick(fractal_noise(size, int(rng.integers(TEXTURE_VARIANTS)), coarsest), rng)


def random_network(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random variant and orientation of :func:`choroidal_network`."""
    return pick(choroidal_network(size, int(rng.integers(TEXTURE_VARIANTS))), rng)


def random_pixel_noise(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random variant and orientation of :func:`pixel_noise`."""
    return pick(pixel_noise(size, int(rng.integers(TEXTURE_VARIANTS))), rng)
