"""The public entry point: :class:`FundusGenerator` turns (seed, index) into a :class:`SyntheticFundus`."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from PIL import Image

from ..schema import FINDING_COLUMNS
from .camera import quality_score
from .canvas import MaskLog
from .geometry import FundusGeometry
from .grading import DRInventory, dr_grade_from_inventory
from .labels import LabelPlan, build_record, resolve_prevalence, sample_plan
from .render import Streams, render

MASK_KEYS: tuple[str, ...] = (*FINDING_COLUMNS, "dr_grade")
MIN_SIZE, MAX_SIZE = 64, 4096


@dataclass
class SyntheticFundus:
    """One generated sample: the photograph, its metadata record, and (lazily) masks of what was drawn."""

    index: int
    image: Image.Image
    record: dict[str, Any]
    plan: LabelPlan
    inventory: DRInventory
    geometry: FundusGeometry
    png: bytes | None = None
    _log: MaskLog | None = field(default=None, repr=False)

    @cached_property
    def masks(self) -> dict[str, np.ndarray]:
        """Boolean (H, W) mask per finding column and ``dr_grade``: where that finding was drawn (in the field)."""
        field_mask = self.geometry.field_mask
        return {key: self._log.rasterise(self._log.tags_under(key), field_mask) for key in MASK_KEYS}

    @cached_property
    def lesion_masks(self) -> dict[str, np.ndarray]:
        """Boolean mask per drawn feature, e.g. ``dr_grade/microaneurysm`` or ``is_gc/enlarged_cup``."""
        field_mask = self.geometry.field_mask
        return {tag: self._log.rasterise([tag], field_mask) for tag in self._log.tags()}


def encode_png(image: Image.Image, compress_level: int = 1) -> bytes:
    """PNG bytes of an image (level 1: fast, about 3x faster than the default for a few % more bytes)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def encode_jpeg(image: Image.Image, quality: int = 95) -> bytes:
    """JPEG bytes of an image, as fundus cameras store them (4:4:4 chroma: lesions are a few pixels wide)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


class FundusGenerator:
    """Procedural colour fundus photographs with labels that match what is drawn.

    ``sample(index)`` depends only on (``seed``, ``index``, ``image_size``, ``prevalence``): the same arguments
    give identical pixels and records in any process and in any order.

    Args:
        image_size: output width and height in pixels (64-4096).
        prevalence: overrides of :data:`~visionclip.synthetic.labels.DEFAULT_PREVALENCE`.
        seed: base seed.
        encode_png: encode each image to PNG (needed for ``file_md5`` and for writing datasets).
        png_compress_level: zlib level for the PNG bytes (0-9).
    """

    def __init__(
        self,
        image_size: int = 512,
        prevalence: Mapping[str, float] | None = None,
        seed: int = 0,
        *,
        encode_png: bool = True,
        png_compress_level: int = 1,
    ):
        if not isinstance(image_size, int) or not MIN_SIZE <= image_size <= MAX_SIZE:
            raise ValueError(f"image_size must be an integer between {MIN_SIZE} and {MAX_SIZE}, got {image_size!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not 0 <= png_compress_level <= 9:
            raise ValueError(f"png_compress_level must be 0-9, got {png_compress_level}")
        self.image_size = image_size
        self.prevalence = resolve_prevalence(prevalence)
        self.seed = seed
        self.encode_png = encode_png
        self.png_compress_level = png_compress_level

    def config(self) -> dict[str, Any]:
        """The settings that determine the samples (for logs and manifests)."""
        return {
            "image_size": self.image_size,
            "seed": self.seed,
            "prevalence": dict(self.prevalence),
            "png_compress_level": self.png_compress_level,
        }

    def _streams(self, index: int) -> list[np.random.Generator]:
        if index < 0:
            raise ValueError(f"index must be non-negative, got {index}")
        children = np.random.SeedSequence([self.seed, index]).spawn(5)
        return [np.random.default_rng(child) for child in children]

    def sample_plan(self, index: int) -> LabelPlan:
        """Only the labels of sample ``index`` (no drawing): cheap, for prevalence statistics."""
        return sample_plan(self._streams(index)[0], self.prevalence)

    def sample(self, index: int) -> SyntheticFundus:
        """Generate sample ``index``."""
        label_rng, geometry_rng, anatomy_rng, lesion_rng, camera_rng = self._streams(index)
        plan = sample_plan(label_rng, self.prevalence)
        rendering = render(plan, self.image_size, Streams(geometry_rng, anatomy_rng, lesion_rng, camera_rng))
        grade = dr_grade_from_inventory(rendering.inventory)
        quality = quality_score(
            rendering.camera, disc_in_field=plan.disc_in_field, macula_in_field=plan.macula_in_field
        )
        png = encode_png(rendering.image, self.png_compress_level) if self.encode_png else None
        record = build_record(
            plan,
            grade,
            quality,
            file_name=f"{index}.png",
            file_md5=hashlib.md5(png).hexdigest() if png else None,
            media_haze=rendering.camera.haze_grade,
        )
        return SyntheticFundus(
            index, rendering.image, record, plan, rendering.inventory, rendering.geometry, png, rendering.log
        )

    def samples(self, start: int, stop: int) -> Iterator[SyntheticFundus]:
        """Samples ``start`` .. ``stop - 1`` in order."""
        for index in range(start, stop):
            yield self.sample(index)
