"""Zero-shot evaluation on a held-out split of SynFundus-schema data: AUROC per finding.

For each finding the model compares the prompt ensemble of the finding (names and appearances from the knowledge
base) with the ensemble of its denial ("no signs of glaucoma", ...); the score is the difference of the two
cosine similarities, and AUROC measures how well it ranks images with the finding above images without.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from ..knowledge import KnowledgeBase, load_knowledge_base
from ..schema import CAPTIONED_COLUMNS, FINDING_COLUMNS
from ..streaming import open_parquet_stream

MIN_POSITIVES = 10  # fewer positives (or negatives) than this: too rare to measure, reported as such


@dataclass(frozen=True)
class FindingProbe:
    """A binary question: which label defines positives, and which concept references prompt each side."""

    name: str
    column: str
    threshold: int
    present: tuple[str, ...]
    absent: tuple[str, ...]


def finding_probes(knowledge: KnowledgeBase | None = None) -> list[FindingProbe]:
    """One probe per finding column, plus any DR (grade >= 1) and referable DR (grade >= 2)."""
    knowledge = knowledge or load_knowledge_base()
    probes = [
        FindingProbe(
            "diabetic_retinopathy",
            "dr_grade",
            1,
            ("diabetic_retinopathy", "dr_grade_1", "dr_grade_2", "dr_grade_3", "dr_grade_4"),
            ("diabetic_retinopathy:absent", "dr_grade_0"),
        ),
        FindingProbe(
            "referable_dr", "dr_grade", 2, ("dr_grade_2", "dr_grade_3", "dr_grade_4"), ("dr_grade_0", "dr_grade_1")
        ),
    ]
    for column in FINDING_COLUMNS:
        concept = next(c for c in knowledge.concepts.values() if c.column == column and c.grade is None)
        probes.append(FindingProbe(concept.id, column, 1, (concept.id,), (f"{concept.id}:absent",)))
    return probes


class HeldOutEvaluator:
    """Holds `samples` prepared held-out images (uint8, at the model's input size) and their labels in memory."""

    def __init__(
        self,
        files: list[str],
        image_processor,
        tokenizer,
        samples: int,
        batch_size: int = 64,
        knowledge: KnowledgeBase | None = None,
    ):
        self.image_processor, self.tokenizer, self.batch_size = image_processor, tokenizer, batch_size
        self.knowledge = knowledge or load_knowledge_base()
        self.probes = finding_probes(self.knowledge)
        images, labels = [], []
        for row in open_parquet_stream(files).take(samples):
            images.append(np.asarray(image_processor.prepare_image(row["image"])))
            labels.append([int(row.get(column) or 0) for column in CAPTIONED_COLUMNS])
        if not images:
            raise ValueError(f"No held-out images in {files[:1]}...")
        self.images = np.stack(images)
        self.labels = np.asarray(labels)

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def image_embeddings(self, model) -> torch.Tensor:
        device = next(model.parameters()).device
        chunks = []
        for start in range(0, len(self.images), self.batch_size):
            prepared = [self.images[i] for i in range(start, min(start + self.batch_size, len(self.images)))]
            pixels = self.image_processor.to_pixel_values([Image.fromarray(a) for a in prepared])
            chunks.append(model.encode_image(torch.from_numpy(pixels).to(device)).float())
        return torch.cat(chunks)

    @torch.no_grad()
    def evaluate(self, model, embeddings: torch.Tensor | None = None) -> dict[str, dict[str, float | int | None]]:
        """`{finding: {"auroc", "positives", "negatives"}}`; AUROC is None when a side has < MIN_POSITIVES.
        `embeddings`: this split's `image_embeddings(model)`, when the caller already has them."""
        was_training = model.training
        model.eval()
        embeddings = self.image_embeddings(model) if embeddings is None else embeddings
        results = {}
        for probe in self.probes:
            truth = self.labels[:, CAPTIONED_COLUMNS.index(probe.column)] >= probe.threshold
            positives, negatives = int(truth.sum()), int((~truth).sum())
            classifier = model.zero_shot_classifier(
                {
                    "present": self.knowledge.class_prompts(probe.present),
                    "absent": self.knowledge.class_prompts(probe.absent),
                },
                self.tokenizer,
            ).to(embeddings.device)
            similarity = embeddings @ classifier.t()
            score = (similarity[:, 0] - similarity[:, 1]).cpu().numpy()
            measurable = min(positives, negatives) >= MIN_POSITIVES
            auroc = float(roc_auc_score(truth, score)) if measurable else None
            results[probe.name] = {"auroc": auroc, "positives": positives, "negatives": negatives}
        model.train(was_training)
        return results


def mean_auroc(results: dict[str, dict]) -> float | None:
    values = [r["auroc"] for r in results.values() if r["auroc"] is not None]
    return float(np.mean(values)) if values else None
