"""Batched image embedding with DataLoader workers; unreadable images are collected, not silently skipped."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..precision import inference_autocast
from .data import EvalItem


@dataclass
class Embeddings:
    """L2-normalised embeddings `(n, dim)` of the readable items, and the unreadable ones with their errors."""

    vectors: torch.Tensor
    items: list[EvalItem]
    failures: list[tuple[str, str]]


class _PreparedImages(torch.utils.data.Dataset):
    def __init__(self, items: list[EvalItem], image_processor):
        self.items, self.image_processor = items, image_processor

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        """Everything but the model runs here (in a worker): load, crop, resize, pad, rescale, normalise."""
        try:
            image = self.image_processor.prepare_image(self.items[index].image)
            return index, self.image_processor.to_pixel_values([image])[0], None
        except (ValueError, OSError) as error:
            return index, None, str(error)


def _collate(batch):
    return batch


@torch.no_grad()
def embed_images(
    model,
    image_processor,
    items: list[EvalItem],
    batch_size: int = 32,
    num_workers: int = 0,
    precision: str = "no",
) -> Embeddings:
    """Decode and preprocess in `num_workers` processes, encode in this one, in `precision` (`no`, or a resolved
    mixed precision such as `bf16`: autocast; the embeddings come back in fp32 either way)."""
    loader = torch.utils.data.DataLoader(
        _PreparedImages(items, image_processor), batch_size=batch_size, num_workers=num_workers, collate_fn=_collate
    )
    device = next(model.parameters()).device
    vectors, kept, failures = [], [], []
    for batch in loader:
        ready = [(index, array) for index, array, error in batch if error is None]
        failures += [
            (str(items[index].image if not isinstance(items[index].image, (bytes, dict)) else items[index].id), error)
            for index, _, error in batch
            if error is not None
        ]
        if not ready:
            continue
        pixels = torch.from_numpy(np.stack([array for _, array in ready]))
        with inference_autocast(precision, device):
            vectors.append(model.encode_image(pixels.to(device)).float().cpu())
        kept += [items[index] for index, _ in ready]
    if not kept:
        raise ValueError(f"None of the {len(items)} images could be read; first error: {failures[0][1]}")
    return Embeddings(torch.cat(vectors), kept, failures)
