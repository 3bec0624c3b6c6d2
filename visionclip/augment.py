"""Training-time augmentation of prepared (FOV-cropped, resized, padded) fundus images, with PIL only.

Applied at the model's input size, after the image processor's geometric steps, so it costs little. A horizontal
flip turns a right eye into a left eye, so the caller swaps `eyes_side` before captioning.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageEnhance


@dataclass(frozen=True)
class FundusAugment:
    """Random flip, rotation + zoom (one affine warp, black fill) and brightness/contrast/saturation jitter."""

    flip_probability: float = 0.5
    max_rotation: float = 15.0
    zoom: tuple[float, float] = (0.92, 1.08)
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 <= self.flip_probability <= 1.0:
            raise ValueError(f"flip_probability must be in [0, 1], got {self.flip_probability}")
        if not 0 < self.zoom[0] <= self.zoom[1]:
            raise ValueError(f"zoom must be an increasing pair of positive factors, got {self.zoom}")
        if min(self.brightness, self.contrast, self.saturation, self.max_rotation) < 0:
            raise ValueError("augmentation strengths must be non-negative")

    def __call__(self, image: Image.Image, rng: random.Random) -> tuple[Image.Image, bool]:
        """Returns the augmented image and whether it was mirrored left-right."""
        flipped = rng.random() < self.flip_probability
        if flipped:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        angle = math.radians(rng.uniform(-self.max_rotation, self.max_rotation))
        scale = rng.uniform(*self.zoom)
        image = self._warp(image, angle, scale)
        for enhancer, strength in (
            (ImageEnhance.Brightness, self.brightness),
            (ImageEnhance.Contrast, self.contrast),
            (ImageEnhance.Color, self.saturation),
        ):
            if strength:
                image = enhancer(image).enhance(rng.uniform(1.0 - strength, 1.0 + strength))
        return image, flipped

    @staticmethod
    def _warp(image: Image.Image, angle: float, scale: float) -> Image.Image:
        """Rotate by `angle` and zoom by `scale` about the centre; PIL wants the output-to-input mapping."""
        width, height = image.size
        cx, cy = width / 2, height / 2
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        matrix = (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy)
        return image.transform(image.size, Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR, fillcolor=0)
