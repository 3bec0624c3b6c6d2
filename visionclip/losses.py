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

    def forward(self, image_embeds, text_embeds, logit_scale, labels=None) -> torch.Tensor:
        """`image_embeds`, `text_embeds`: `(local_batch, dim)` L2-normalised; `logit_scale`: scalar (not log)."""
        image_embeds, text_embeds = gather(image_embeds), gather(text_embeds)
        logits = logit_scale * image_embeds @ text_embeds.t()
        target = torch.arange(len(logits), device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def label_facts(labels: torch.Tensor) -> torch.Tensor:
    """`(n, len(CAPTIONED_COLUMNS))` labels -> `(n, facts)` 0/1: DR grade 1-4, each finding, each unreadable part,
    and "normal" when none of these holds."""
    from .captions import CAPTIONED_COLUMNS
    from .schema import FINDING_COLUMNS, READABILITY_COLUMNS

    grade = labels[:, CAPTIONED_COLUMNS.index("dr_grade")]
    parts = [grade[:, None] == torch.arange(1, 5, device=labels.device)]
    parts.append(labels[:, [CAPTIONED_COLUMNS.index(c) for c in FINDING_COLUMNS]] == 1)
    parts.append(labels[:, [CAPTIONED_COLUMNS.index(c) for c in READABILITY_COLUMNS]] == 0)
    facts = torch.cat(parts, dim=1)
    return torch.cat([facts, ~facts.any(dim=1, keepdim=True)], dim=1).float()


class LabelAwareLoss(nn.Module):
    """FLAIR-style soft-target InfoNCE: a caption is a (partly) correct description of every image that shares its
    labels, so those pairs are not pushed apart as plain InfoNCE would.

    `similarity="exact"` is FLAIR's rule: pairs with identical label vectors are positives. `"jaccard"` extends it
    to multi-label records: the target weight of a pair is the Jaccard overlap of their findings (see
    `label_facts`), so an image with glaucoma is drawn towards every caption that states glaucoma. Rows of the
    target matrix are normalised to sum to 1; the image itself always has the largest weight.
    """

    name = "label_aware"

    def __init__(self, similarity: str = "exact"):
        super().__init__()
        if similarity not in ("exact", "jaccard"):
            raise ValueError(f"similarity must be 'exact' or 'jaccard', got {similarity!r}")
        self.similarity = similarity

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        if self.similarity == "exact":
            same = (labels[:, None, :] == labels[None, :, :]).all(dim=-1).float()
        else:
            facts = label_facts(labels)
            shared = facts @ facts.t()
            sizes = facts.sum(dim=1)
            same = shared / (sizes[:, None] + sizes[None, :] - shared)
        return same / same.sum(dim=-1, keepdim=True)

    def forward(self, image_embeds, text_embeds, logit_scale, labels) -> torch.Tensor:
        """`labels`: `(local_batch, num_label_columns)` integers; other arguments as in `ClipLoss`."""
        image_embeds, text_embeds, labels = gather(image_embeds), gather(text_embeds), gather(labels)
        logits = logit_scale * image_embeds @ text_embeds.t()
        targets = self.targets(labels).to(logits.dtype)
        return (soft_cross_entropy(logits, targets) + soft_cross_entropy(logits.t(), targets)) / 2


class SigLipLoss(nn.Module):
    """Sigmoid loss (Zhai et al., 2023) over the global batch with a learnable bias kept in the loss module.

    The bias shifts every logit equally, so zero-shot softmax classification does not need it at inference.
    """

    name = "siglip"

    def __init__(self, bias_init: float = -10.0):
        super().__init__()
        self.logit_bias = nn.Parameter(torch.tensor(float(bias_init)))

    def forward(self, image_embeds, text_embeds, logit_scale, labels=None) -> torch.Tensor:
        image_embeds, text_embeds = gather(image_embeds), gather(text_embeds)
        logits = logit_scale * image_embeds @ text_embeds.t() + self.logit_bias
        signs = 2 * torch.eye(len(logits), device=logits.device, dtype=logits.dtype) - 1
        return -F.logsigmoid(signs * logits).sum() / len(logits)


LOSSES = {"clip": ClipLoss, "label_aware": LabelAwareLoss, "siglip": SigLipLoss}


def build_loss(name: str, label_similarity: str = "exact") -> nn.Module:
    """A loss by name; `label_similarity` ("jaccard" or FLAIR's "exact") applies to `label_aware`."""
    if name not in LOSSES:
        raise ValueError(f"Unknown loss {name!r}: choose one of {sorted(LOSSES)}")
    return LabelAwareLoss(label_similarity) if name == "label_aware" else LOSSES[name]()
