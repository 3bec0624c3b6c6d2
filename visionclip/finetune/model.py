"""The classifier a fine-tuning run starts from, WiSE-FT weight interpolation, and layer-wise learning rates."""

from __future__ import annotations

import re

import torch
from torch import nn

from modeling_visionclip import VisionCLIPForImageClassification, VisionCLIPModel

from ..zeroshot.tasks import ZeroShotTask

# `encoder.blocks.3.` (EfficientNet), `encoder.stages.2.` (ResNet, ConvNeXt), `encoder.layer.7.` (ViT, BERT-like)
_BLOCK = re.compile(r"(?:^|\.)encoder\.(?:blocks|stages|layers?)\.(\d+)\.")


def zero_shot_classifier(
    model: VisionCLIPModel, tokenizer, task: ZeroShotTask, classes: list[str]
) -> VisionCLIPForImageClassification:
    """A classifier of `classes` whose head is the task's prompt-ensemble text embeddings times the logit scale:
    before any training it gives exactly the zero-shot logits of `model`."""
    prompts = task.class_prompts()
    embeddings = model.zero_shot_classifier({name: prompts[name] for name in classes}, tokenizer)
    return VisionCLIPForImageClassification.from_clip_model(model, dict(enumerate(classes)), embeddings)


def wise_interpolate(
    zero_shot: VisionCLIPForImageClassification, finetuned: VisionCLIPForImageClassification, alpha: float
) -> VisionCLIPForImageClassification:
    """WiSE-FT (Wortsman et al., 2022): `finetuned` with every floating-point weight and statistic set to
    `(1 - alpha) * zero_shot + alpha * finetuned`; alpha 0 is the zero-shot model, 1 the fine-tuned one."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"--wise-alpha must be between 0 and 1, got {alpha}")
    start = zero_shot.state_dict()
    with torch.no_grad():
        for name, tensor in finetuned.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.lerp(start[name].to(tensor), tensor, alpha))
    return finetuned


def block_index(name: str) -> int | None:
    """The tower block a parameter name belongs to, or None outside the blocks."""
    match = _BLOCK.search(name)
    return int(match.group(1)) if match else None


def parameter_groups(
    classifier: VisionCLIPForImageClassification,
    tower_lr: float,
    head_lr: float,
    weight_decay: float,
    layer_decay: float = 1.0,
) -> list[dict]:
    """AdamW groups: the head (classifier) at `head_lr` without weight decay; the tower and projection at
    `tower_lr` scaled by `layer_decay ** depth`, where depth counts blocks down from the top (the stem below the
    first block is deepest, layers after the last block and the projection are at depth 0). Norms and biases take
    no weight decay."""
    named = [(name, p) for name, p in classifier.named_parameters() if p.requires_grad]
    blocks = [block_index(name) for name, _ in named if name.startswith("vision_model.")]
    last = max((b for b in blocks if b is not None), default=-1)
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    seen_block = False
    for name, parameter in named:
        if name.startswith("classifier."):
            lr, decay = head_lr, 0.0
        else:
            block = block_index(name)
            seen_block = seen_block or block is not None
            if block is not None:
                depth = last + 1 - block
            else:
                depth = last + 2 if name.startswith("vision_model.") and not seen_block else 0
            lr = tower_lr * layer_decay**depth
            decay = 0.0 if parameter.ndim <= 1 else weight_decay
        groups.setdefault((lr, decay), []).append(parameter)
    return [{"params": params, "lr": lr, "weight_decay": decay} for (lr, decay), params in groups.items()]
