"""Training-time augmentation of fundus images, with PIL only.

Applied to the field-of-view crop together with the image processor's resize and pad (one resampling at the
model's input size), or to an already prepared image. A horizontal
flip turns a right eye into a left eye, so the caller swaps `eyes_side` before captioning.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageEnhance

from image_processing_visionclip import CanvasPlacement


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
        """Augment a prepared image; returns the augmented image and whether it was mirrored left-right."""
        return self.place(image, CanvasPlacement(image.size, image.size, (0, 0)), rng)

    def place(self, image: Image.Image, placement: CanvasPlacement, rng: random.Random) -> tuple[Image.Image, bool]:
        """Augment a field-of-view crop while the image processor's resize and pad put it on its canvas
        (`VisionCLIPImageProcessor.placement`): one resampling instead of two. Returns the canvas and whether it
        was mirrored left-right."""
        flipped = rng.random() < self.flip_probability
        if flipped:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        angle = math.radians(rng.uniform(-self.max_rotation, self.max_rotation))
        scale = rng.uniform(*self.zoom)
        image = self._warp(image, placement, angle, scale)
        for enhancer, strength in (
            (ImageEnhance.Brightness, self.brightness),
            (ImageEnhance.Contrast, self.contrast),
            (ImageEnhance.Color, self.saturation),
        ):
            if strength:
                image = enhancer(image).enhance(rng.uniform(1.0 - strength, 1.0 + strength))
        return image, flipped

    @staticmethod
    def _warp(image: Image.Image, placement: CanvasPlacement, angle: float, scale: float) -> Image.Image:
        """Fit `image` into `placement` and rotate by `angle` / zoom by `scale` about the canvas centre, in one
        bilinear affine resampling (PIL wants the output-to-input mapping, in continuous pixel coordinates)."""
        shrink = int(min(image.width / placement.fitted[0], image.height / placement.fitted[1]))
        if shrink >= 2:  # bilinear sampling aliases beyond 2x reduction: box-reduce first
            image = image.reduce(shrink)
        to_input_x = image.width / placement.fitted[0]
        to_input_y = image.height / placement.fitted[1]
        cx, cy = placement.canvas[0] / 2, placement.canvas[1] / 2
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        left, top = placement.offset
        matrix = (
            cos * to_input_x,
            sin * to_input_x,
            (cx - cos * cx - sin * cy - left) * to_input_x,
            -sin * to_input_y,
            cos * to_input_y,
            (cy + sin * cx - cos * cy - top) * to_input_y,
        )
        return image.transform(
            placement.canvas, Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR, fillcolor=0
        )
