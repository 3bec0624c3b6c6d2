"""Zero-shot evaluation on a held-out split of SynFundus-schema data: AUROC per finding, as training reports it.

For each finding the model compares the prompt ensemble of the finding (names and appearances from the knowledge
base) with the ensemble of its denial ("no signs of glaucoma", ...); the score is the difference of the two
cosine similarities, and AUROC measures how well it ranks images with the finding above images without.
"""

from __future__ import annotations

import numpy as np
import torch

from ..knowledge import KnowledgeBase, load_knowledge_base
from ..streaming import open_parquet_stream
from .engine import ImageCache, binary_auroc
from .tasks import PRESENT, ZeroShotTask, finding_tasks


class HeldOutEvaluator:
    """Holds `samples` prepared held-out images (uint8, at the model's input size) and their classes in memory."""

    kind = "zero-shot"  # how the questions are answered, as logs and the model card name it

    def __init__(
        self,
        files: list[str],
        image_processor,
        tokenizer,
        samples: int,
        batch_size: int = 64,
        knowledge: KnowledgeBase | None = None,
    ):
        self.tokenizer = tokenizer
        self.tasks = finding_tasks(knowledge or load_knowledge_base())
        self.images = ImageCache(image_processor, batch_size)
        classes = []
        for row in open_parquet_stream(files).take(samples):
            self.images.add(row["image"])
            classes.append([task.record_class(row) for task in self.tasks])
        if not classes:
            raise ValueError(f"No held-out images in {files[:1]}...")
        self.classes = dict(zip((task.name for task in self.tasks), np.array(classes).T, strict=True))

    def __len__(self) -> int:
        return len(self.images)

    def present(self, task: ZeroShotTask) -> np.ndarray:
        """Which images have the finding `task` asks about."""
        return self.classes[task.name] == task.labels.index(PRESENT)

    def image_embeddings(self, model) -> torch.Tensor:
        return self.images.embed(model)

    @torch.no_grad()
    def evaluate(self, model, embeddings: torch.Tensor | None = None) -> dict[str, dict[str, float | int | None]]:
        """`{finding: {"auroc", "positives", "negatives"}}`; AUROC is None when a side has too few images.
        `embeddings`: this split's `image_embeddings(model)`, when the caller already has them."""
        was_training = model.training
        model.eval()
        embeddings = self.image_embeddings(model) if embeddings is None else embeddings
        results = {
            task.name: binary_auroc(model, self.tokenizer, task, embeddings, self.present(task)) for task in self.tasks
        }
        model.train(was_training)
        return results


def mean_auroc(results: dict[str, dict]) -> float | None:
    values = [r["auroc"] for r in results.values() if r["auroc"] is not None]
    return float(np.mean(values)) if values else None
