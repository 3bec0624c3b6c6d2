"""AdamW with decoupled weight decay on weights only, and a linear warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import TrainConfig


def parameter_groups(modules: list[nn.Module], weight_decay: float) -> list[dict]:
    """Weights of linear and convolution layers decay; norms, biases, embeddings and scalars (logit scale,
    loss bias) do not, as in CLIP and open_clip."""
    decay, no_decay = [], []
    seen = set()
    for module in modules:
        for name, parameter in module.named_parameters():
            if not parameter.requires_grad or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            exempt = parameter.ndim < 2 or "embeddings" in name or "norm" in name.lower() or "logit" in name
            (no_decay if exempt else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


TOWERS = ("vision_model", "text_model")


def with_tower_lr(groups: list[dict], modules: list[nn.Module], tower_lr: float) -> list[dict]:
    """Each group split in two: the towers' parameters at `tower_lr`, the rest (projections, logit scale, loss
    parameters) at the optimizer's learning rate, as when pretrained towers are tuned under new heads."""
    in_towers = {
        id(parameter)
        for module in modules
        for tower in TOWERS
        if isinstance(getattr(module, tower, None), nn.Module)
        for parameter in getattr(module, tower).parameters()
    }
    split = []
    for group in groups:
        towers = [p for p in group["params"] if id(p) in in_towers]
        rest = [p for p in group["params"] if id(p) not in in_towers]
        split += [{**group, "params": rest}, {**group, "params": towers, "lr": tower_lr}]
    return split


def build_optimizer(
    modules: list[nn.Module],
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    eps: float,
    fused: bool = False,
    tower_lr: float | None = None,
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of `modules`; `fused` selects the single-kernel implementation;
    `tower_lr`, if given, is the towers' learning rate (see `with_tower_lr`)."""
    groups = parameter_groups(modules, weight_decay)
    if tower_lr is not None:
        groups = with_tower_lr(groups, modules, tower_lr)
    groups = [group for group in groups if group["params"]]
    if not groups:
        raise ValueError("Nothing to train: every parameter is frozen")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 to the peak over `warmup_steps`, then cosine decay to `min_ratio` x peak (each
    parameter group's own peak)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def optimizer_and_schedule(
    modules: list[nn.Module], config: TrainConfig, fused: bool = False
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable parameters of `modules` and its warm-up + cosine schedule, as `config` sets them."""
    optimizer = build_optimizer(
        modules,
        config.lr,
        config.weight_decay,
        (config.adam_beta1, config.adam_beta2),
        config.adam_eps,
        fused=fused,
        tower_lr=config.tower_lr,
    )
    return optimizer, warmup_cosine(optimizer, config.warmup_steps, config.max_steps, config.min_lr / config.lr)
