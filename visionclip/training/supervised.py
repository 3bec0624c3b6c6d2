"""The supervised-pretraining objective (`train.py --objective supervised`), the Image+Fundus-style baseline: the
image tower alone learns the synthetic labels through a linear head, with multi-label binary cross-entropy over the
findings plus an ordinal term for the DR grade (one binary question per threshold, grade >= 1 ... grade >= 4).

The head lives in the loss module, as SigLIP's bias does: the loop, the optimizer and the checkpoints treat it like
any loss parameter, and the exported model folder holds the trained image tower with the text side as the preset
shipped it (untrained: zero-shot prompts mean nothing to this model).
"""

from __future__ import annotations

import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.nn import functional as F

from ..losses import gather
from ..schema import COLUMNS_BY_NAME, FINDING_COLUMNS, LABEL_VECTOR_COLUMNS
from ..zeroshot.engine import MIN_POSITIVES
from ..zeroshot.heldout import HeldOutEvaluator
from ..zeroshot.tasks import PRESENT, ZeroShotTask

GRADE_COLUMN = "dr_grade"
GRADE_THRESHOLDS = tuple(range(1, COLUMNS_BY_NAME[GRADE_COLUMN].maximum + 1))
# the head's outputs, in order: the ordinal DR-grade questions, then one per finding column
HEAD_OUTPUTS = (*(f"{GRADE_COLUMN}>={t}" for t in GRADE_THRESHOLDS), *FINDING_COLUMNS)


def head_targets(labels: torch.Tensor) -> torch.Tensor:
    """`(n, len(LABEL_VECTOR_COLUMNS))` label vectors -> `(n, len(HEAD_OUTPUTS))` 0/1 targets."""
    grade = labels[:, LABEL_VECTOR_COLUMNS.index(GRADE_COLUMN), None]
    ordinal = grade >= torch.tensor(GRADE_THRESHOLDS, device=labels.device)
    findings = labels[:, [LABEL_VECTOR_COLUMNS.index(c) for c in FINDING_COLUMNS]] == 1
    return torch.cat([ordinal, findings], dim=1).float()


class SupervisedLoss(nn.Module):
    """Binary cross-entropy of a linear head on the image embeddings: the mean over the findings plus the mean over
    the DR-grade thresholds, over the global batch. Takes the contrastive losses' arguments and ignores the texts."""

    name = "supervised"
    uses_text = False  # the loop may skip encoding the captions

    def __init__(self, embed_dim: int):
        super().__init__()
        self.head = nn.Linear(embed_dim, len(HEAD_OUTPUTS))
        # the embeddings are L2-normalised: scaled to unit variance per coordinate, the head's default init fits
        self.input_scale = embed_dim**0.5

    def logits(self, image_embeds: torch.Tensor) -> torch.Tensor:
        return self.head(image_embeds * self.input_scale)

    def forward(self, image_embeds, text_embeds, logit_scale, labels, caption_facts=None) -> torch.Tensor:
        image_embeds, labels = gather(image_embeds), gather(labels)
        logits, targets = self.logits(image_embeds), head_targets(labels).to(image_embeds.dtype)
        grades = len(GRADE_THRESHOLDS)
        ordinal = F.binary_cross_entropy_with_logits(logits[:, :grades], targets[:, :grades])
        findings = F.binary_cross_entropy_with_logits(logits[:, grades:], targets[:, grades:])
        return findings + ordinal


def freeze_text_side(model: nn.Module) -> None:
    """Keep the text tower, its projection and the temperature as they are: the supervised objective trains the
    image side only."""
    for parameter in (*model.text_model.parameters(), *model.text_projection.parameters(), model.logit_scale):
        parameter.requires_grad_(False)


def head_output(task: ZeroShotTask) -> int:
    """The head output that answers a held-out finding question (a column at a threshold)."""
    (column, values), *others = task.synthetic_conditions[PRESENT].items()
    if others:
        raise ValueError(f"task {task.name!r} asks about several columns; the supervised head answers one")
    name = f"{GRADE_COLUMN}>={min(values)}" if column == GRADE_COLUMN else column
    return HEAD_OUTPUTS.index(name)


class SupervisedHeldOutEvaluator(HeldOutEvaluator):
    """The held-out finding questions of training, answered by the supervised head instead of prompts."""

    kind = "supervised-head"

    def __init__(self, *args, head: SupervisedLoss, **kwargs):
        super().__init__(*args, **kwargs)
        self.head = head

    @torch.no_grad()
    def evaluate(self, model, embeddings: torch.Tensor | None = None) -> dict[str, dict[str, float | int | None]]:
        was_training = model.training
        model.eval()
        embeddings = self.image_embeddings(model) if embeddings is None else embeddings
        head = self.head.head
        logits = self.head.logits(embeddings.to(head.weight.device, head.weight.dtype)).float().cpu().numpy()
        model.train(was_training)
        results = {}
        for task in self.tasks:
            present = self.present(task)
            positives, negatives = int(present.sum()), int((~present).sum())
            measurable = min(positives, negatives) >= MIN_POSITIVES
            score = logits[:, head_output(task)]
            auroc = float(roc_auc_score(present, score)) if measurable else None
            results[task.name] = {"auroc": auroc, "positives": positives, "negatives": negatives}
        return results
