"""The zero-shot engine: image embeddings, class embeddings from a task's prompt ensembles, and the scores.

Used by `eval_zeroshot.py` (files decoded in DataLoader workers, `embed_images`) and by training's held-out
evaluation (prepared images kept in memory, `ImageCache`), so both compute the same numbers the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from ..precision import inference_autocast
from .data import EvalItem
from .tasks import PRESENT, ZeroShotTask

MIN_POSITIVES = 10  # fewer positives (or negatives) than this: too rare to measure, reported as such


@torch.no_grad()
def encode_pixels(model, pixels: torch.Tensor, precision: str = "no") -> torch.Tensor:
    """L2-normalised fp32 image embeddings of processed `pixel_values`, on the model's device; `precision` `no`
    (fp32) or a resolved mixed precision such as `bf16` (autocast)."""
    device = next(model.parameters()).device
    with inference_autocast(precision, device):
        return model.encode_image(pixels.to(device)).float()


# ------------------------------------------------------------------------------------ images from files
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


def _item_name(item: EvalItem) -> str:
    return str(item.image if not isinstance(item.image, (bytes, dict)) else item.id)


def embed_images(
    model,
    image_processor,
    items: list[EvalItem],
    batch_size: int = 32,
    num_workers: int = 0,
    precision: str = "no",
) -> Embeddings:
    """Decode and preprocess in `num_workers` processes, encode in this one, in `precision` (see `encode_pixels`);
    the embeddings come back on the CPU."""
    loader = torch.utils.data.DataLoader(
        _PreparedImages(items, image_processor), batch_size=batch_size, num_workers=num_workers, collate_fn=_collate
    )
    vectors, kept, failures = [], [], []
    for batch in loader:
        ready = [(index, array) for index, array, error in batch if error is None]
        failures += [(_item_name(items[index]), error) for index, _, error in batch if error is not None]
        if not ready:
            continue
        pixels = torch.from_numpy(np.stack([array for _, array in ready]))
        vectors.append(encode_pixels(model, pixels, precision).cpu())
        kept += [items[index] for index, _ in ready]
    if not kept:
        raise ValueError(f"None of the {len(items)} images could be read; first error: {failures[0][1]}")
    return Embeddings(torch.cat(vectors), kept, failures)


# ------------------------------------------------------------------------------- images kept in memory
class ImageCache:
    """Images prepared once (FOV crop, resize, pad: uint8 at the model's input size) and kept in memory, for
    evaluating the same images again and again, as training does at every evaluation."""

    def __init__(self, image_processor, batch_size: int = 64):
        self.image_processor, self.batch_size = image_processor, batch_size
        self.images: list[np.ndarray] = []

    def add(self, image: Any) -> None:
        """Prepare one image (a path, encoded bytes, a PIL image or an array) and keep it."""
        self.images.append(np.asarray(self.image_processor.prepare_image(image)))

    def __len__(self) -> int:
        return len(self.images)

    def embed(self, model) -> torch.Tensor:
        """Embeddings `(n, dim)` on the model's device, in fp32."""
        chunks = []
        for start in range(0, len(self.images), self.batch_size):
            prepared = [self.images[i] for i in range(start, min(start + self.batch_size, len(self.images)))]
            pixels = self.image_processor.to_pixel_values([Image.fromarray(a) for a in prepared])
            chunks.append(encode_pixels(model, torch.from_numpy(pixels)))
        return torch.cat(chunks)


# --------------------------------------------------------------------------------------------- scores
def class_embeddings(model, tokenizer, task: ZeroShotTask) -> torch.Tensor:
    """`(num_classes, dim)`: each class's prompt-ensemble embedding, in the task's class order."""
    return model.zero_shot_classifier(task.class_prompts(), tokenizer)


def class_probabilities(model, tokenizer, task: ZeroShotTask, vectors: torch.Tensor) -> np.ndarray:
    """Softmax over classes of the scaled cosine similarity of CPU embeddings to each class embedding."""
    classifier = class_embeddings(model, tokenizer, task).cpu()
    logits = model.logit_scale_value().detach().float().cpu() * vectors @ classifier.t()
    return logits.softmax(-1).numpy()


@torch.no_grad()
def binary_auroc(
    model, tokenizer, task: ZeroShotTask, vectors: torch.Tensor, present: np.ndarray
) -> dict[str, float | int | None]:
    """`{"auroc", "positives", "negatives"}` of a two-class question: images are ranked by how much closer they
    are to the `present` class than to the other one; AUROC is None when a side has fewer than MIN_POSITIVES."""
    classifier = class_embeddings(model, tokenizer, task).to(vectors.device)
    similarity = vectors @ classifier.t()
    yes = task.labels.index(PRESENT)
    score = (similarity[:, yes] - similarity[:, 1 - yes]).cpu().numpy()
    positives, negatives = int(present.sum()), int((~present).sum())
    measurable = min(positives, negatives) >= MIN_POSITIVES
    auroc = float(roc_auc_score(present, score)) if measurable else None
    return {"auroc": auroc, "positives": positives, "negatives": negatives}
