"""The image processor's part in the data stream and in evaluation, named as an interface, and the uint8 pixel
batches the stream hands over.

`ImagePreparer` is what the stream and the evaluators call on an image processor (`VisionCLIPImageProcessor`
implements it): the geometric steps (load, field-of-view crop, resize, pad) run in DataLoader workers on PIL
images; rescale and normalise run once per batch, on the device for training (`PixelNormalizer`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from image_processing_visionclip import CanvasPlacement


@runtime_checkable
class ImagePreparer(Protocol):
    """What the data stream and the evaluators need from an image processor."""

    def prepare_image(self, image: Any) -> Image.Image:
        """Load one input (path, bytes, `datasets` image dict, array, ...) and crop, resize and pad it: an RGB image
        at the model's input size."""

    def load_and_crop(self, image: Any) -> Image.Image:
        """Load one input as RGB and crop its field of view, leaving resize and pad to `placement`."""

    def placement(self, width: int, height: int) -> CanvasPlacement:
        """Where resize and pad put a `width` x `height` crop on the output canvas (for augmentation that warps
        the crop onto the canvas in one resampling)."""

    def to_pixel_values(self, images: list[Image.Image]) -> np.ndarray:
        """Rescale and normalise prepared images of one size: a `(batch, 3, H, W)` float32 array."""

    def pixel_gain_offset(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel float32 `gain`, `offset` of shape `(3, 1, 1)`: `uint8 pixel * gain + offset` equals
        `to_pixel_values`."""


def uint8_pixels(images: list[Image.Image]) -> torch.Tensor:
    """Prepared RGB images of one size as a `(batch, 3, H, W)` uint8 tensor: a quarter of the float32 size in
    DataLoader queues and shared memory; `PixelNormalizer` turns it into model input on the device."""
    return torch.from_numpy(np.stack([np.asarray(image).transpose(2, 0, 1) for image in images]))


class PixelNormalizer:
    """The image processor's rescale and normalise (`pixel_gain_offset`), applied on `device` to uint8 pixels."""

    def __init__(self, image_processor: ImagePreparer, device: torch.device | str):
        gain, offset = image_processor.pixel_gain_offset()
        self.gain = torch.from_numpy(gain).unsqueeze(0).to(device)
        self.offset = torch.from_numpy(offset).unsqueeze(0).to(device)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 `(batch, 3, H, W)` (pinned for a non-blocking copy) -> float32 model input on the device."""
        if pixels.dtype != torch.uint8:
            raise TypeError(f"expected uint8 pixels from the stream, got {pixels.dtype}")
        pixels = pixels.to(self.gain.device, non_blocking=True)
        return pixels.float().mul_(self.gain).add_(self.offset)
