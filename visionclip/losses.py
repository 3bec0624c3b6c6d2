"""Contrastive losses over the global batch, with their distributed behaviour in one place (as in open_clip).

Every process gathers the image and text embeddings (and labels) of all processes and computes the same loss over
the global batch. The gather keeps autograd: in backward each process receives the summed gradient for its own
slice, so after DDP averages parameter gradients the update equals a single process training on the combined batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from .schema import (
    FINDING_COLUMNS,
    HAZE_COLUMN,
    HAZE_GRADES,
    LABEL_VECTOR_COLUMNS,
    READABILITY_COLUMNS,
    SUMMARY_COLUMNS,
)


class _AllGather(torch.autograd.Function):
    """Concatenate a tensor from all processes; backward sums the gradients and returns this process's slice."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(world)]
        dist.all_gather(sizes, torch.tensor([tensor.shape[0]], device=tensor.device))
        sizes = [int(s.item()) for s in sizes]
        if len(set(sizes)) != 1:
            raise ValueError(f"Per-process batch sizes differ ({sizes}); use drop_last so every process matches")
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rank, ctx.size = rank, tensor.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every process computed the same global loss: sum their gradients
        return grad[ctx.rank * ctx.size : (ctx.rank + 1) * ctx.size]


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """All processes' rows of `tensor` (in rank order), differentiable; the tensor itself when not distributed."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    if not tensor.is_floating_point():
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)
    return _AllGather.apply(tensor)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum(targets * log_softmax(logits)); `targets` rows sum to 1."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


class ClipLoss(nn.Module):
    """Symmetric InfoNCE over the global batch: each image's own caption is its only positive."""

    name = "clip"

    def forward(self, image_embeds, text_embeds, logit_scale, labels=None, caption_facts=None) -> torch.Tensor:
        """`image_embeds`, `text_embeds`: `(local_batch, dim)` L2-normalised; `logit_scale`: scalar (not log)."""
        image_embeds, text_embeds = gather(image_embeds), gather(text_embeds)
        logits = logit_scale * image_embeds @ text_embeds.t()
        target = torch.arange(len(logits), device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def label_facts(labels: torch.Tensor) -> torch.Tensor:
    """`(n, len(LABEL_VECTOR_COLUMNS))` labels -> `(n, len(FACTS))` 0/1: DR grade 1-4, each finding, each
    unreadable part, "normal" (no DR, no finding and no abnormality flag) and each hazy grade — see `schema.FACTS`."""

    def columns(names):
        return labels[:, [LABEL_VECTOR_COLUMNS.index(c) for c in names]]

    grade = labels[:, LABEL_VECTOR_COLUMNS.index("dr_grade")]
    grades = grade[:, None] == torch.arange(1, 5, device=labels.device)
    findings = columns(FINDING_COLUMNS) == 1
    unreadable = columns(READABILITY_COLUMNS) == 0
    disease = torch.cat([grades, findings, columns(SUMMARY_COLUMNS) == 1], dim=1).any(dim=1, keepdim=True)
    haze = labels[:, LABEL_VECTOR_COLUMNS.index(HAZE_COLUMN), None] == torch.tensor(HAZE_GRADES, device=labels.device)
    return torch.cat([grades, findings, unreadable, ~disease, haze], dim=1).float()


LABEL_SIMILARITIES = ("exact", "jaccard", "entailment")


def _rows_sum_to_one(weights: torch.Tensor) -> torch.Tensor:
    return weights / weights.sum(dim=-1, keepdim=True)


class LabelAwareLoss(nn.Module):
    """FLAIR-style soft-target InfoNCE: a caption is a (partly) correct description of every image that shares its
    labels, so those pairs are not pushed apart as plain InfoNCE would.

    `similarity` decides which image-caption pairs are positives:
    - `"exact"`, FLAIR's rule: the two records have identical label vectors;
    - `"jaccard"`: weight = Jaccard overlap of the two records' facts (see `label_facts`);
    - `"entailment"`: the caption is true of the image — the image has every fact the caption asserts and none it
      denies (needs `caption_facts` from `Captioner.caption_with_facts`). With one finding per caption this is
      FLAIR's category-sharing rule extended to multi-label images.
    Each image's own caption is always a positive. Image-to-text targets are the rows of the pair matrix,
    text-to-image targets its columns, each normalised to sum to 1.
    """

    name = "label_aware"

    def __init__(self, similarity: str = "exact"):
        super().__init__()
        if similarity not in LABEL_SIMILARITIES:
            raise ValueError(f"similarity must be one of {LABEL_SIMILARITIES}, got {similarity!r}")
        self.similarity = similarity

    def pair_weights(self, labels: torch.Tensor, caption_facts: torch.Tensor | None = None) -> torch.Tensor:
        """`(n, n)` weights: row i = image i, column j = caption j."""
        if self.similarity == "exact":
            return (labels[:, None, :] == labels[None, :, :]).all(dim=-1).float()
        facts = label_facts(labels)
        if self.similarity == "jaccard":
            shared = facts @ facts.t()
            sizes = facts.sum(dim=1)
            return shared / (sizes[:, None] + sizes[None, :] - shared)
        if caption_facts is None:
            raise ValueError("label_similarity 'entailment' needs the caption_facts of each caption")
        asserted, denied = caption_facts.float().split(facts.shape[1], dim=1)
        holds = facts @ asserted.t() == asserted.sum(dim=1)[None, :]
        contradicted = facts @ denied.t() > 0
        own = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        return ((holds & ~contradicted) | own).float()

    def targets(self, labels: torch.Tensor, caption_facts: torch.Tensor | None = None) -> torch.Tensor:
        """Image-to-text targets (rows sum to 1); text-to-image targets are `targets` of the transposed weights."""
        return _rows_sum_to_one(self.pair_weights(labels, caption_facts))

    def forward(self, image_embeds, text_embeds, logit_scale, labels, caption_facts=None) -> torch.Tensor:
        """`labels`: `(local_batch, num_label_columns)` integers; `caption_facts`: `(local_batch, 2 * len(FACTS))`
        0/1 (entailment only); other arguments as in `ClipLoss`."""
        image_embeds, text_embeds, labels = gather(image_embeds), gather(text_embeds), gather(labels)
        if caption_facts is not None:
            caption_facts = gather(caption_facts)
        logits = logit_scale * image_embeds @ text_embeds.t()
        weights = self.pair_weights(labels, caption_facts).to(logits.dtype)
        image_loss = soft_cross_entropy(logits, _rows_sum_to_one(weights))
        text_loss = soft_cross_entropy(logits.t(), _rows_sum_to_one(weights.t()))
        return (image_loss + text_loss) / 2


class SigLipLoss(nn.Module):
    """Sigmoid loss (Zhai et al., 2023) over the global batch with a learnable bias kept in the loss module.

    The bias shifts every logit equally, so zero-shot softmax classification does not need it at inference.
    """

    name = "siglip"

    def __init__(self, bias_init: float = -10.0):
        super().__init__()
        self.logit_bias = nn.Parameter(torch.tensor(float(bias_init)))

    def forward(self, image_embeds, text_embeds, logit_scale, labels=None, caption_facts=None) -> torch.Tensor:
        image_embeds, text_embeds = gather(image_embeds), gather(text_embeds)
        logits = logit_scale * image_embeds @ text_embeds.t() + self.logit_bias
        signs = 2 * torch.eye(len(logits), device=logits.device, dtype=logits.dtype) - 1
        return -F.logsigmoid(signs * logits).sum() / len(logits)


LOSSES = {"clip": ClipLoss, "label_aware": LabelAwareLoss, "siglip": SigLipLoss}


def build_loss(name: str, label_similarity: str = "exact") -> nn.Module:
    """A loss by name; `label_similarity` (FLAIR's "exact", "jaccard" or "entailment") applies to `label_aware`."""
    if name not in LOSSES:
        raise ValueError(f"Unknown loss {name!r}: choose one of {sorted(LOSSES)}")
    return LabelAwareLoss(label_similarity) if name == "label_aware" else LOSSES[name]()
