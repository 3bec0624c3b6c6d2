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


class LabelAwareLoss(nn.Module):
    """FLAIR-style soft-target InfoNCE: pairs whose label vectors are identical are positives of each other.

    Captions are generated from labels, so two images with the same labels have equivalent captions; plain InfoNCE
    would push them apart. Targets are the label-equality matrix, each row normalised to sum to 1.
    """

    name = "label_aware"

    def forward(self, image_embeds, text_embeds, logit_scale, labels) -> torch.Tensor:
        """`labels`: `(local_batch, num_label_columns)` integers; other arguments as in `ClipLoss`."""
        image_embeds, text_embeds, labels = gather(image_embeds), gather(text_embeds), gather(labels)
        logits = logit_scale * image_embeds @ text_embeds.t()
        same = (labels[:, None, :] == labels[None, :, :]).all(dim=-1).to(logits.dtype)
        targets = same / same.sum(dim=-1, keepdim=True)
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


def build_loss(name: str) -> nn.Module:
    if name not in LOSSES:
        raise ValueError(f"Unknown loss {name!r}: choose one of {sorted(LOSSES)}")
    return LOSSES[name]()
