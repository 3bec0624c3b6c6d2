"""Speed settings that depend on the device: what is fast and safe on a CPU differs from a CUDA GPU."""

from __future__ import annotations

import torch
from torch import nn

from towers_visionclip import hidden_state_widths


def channels_last_is_safe(model: nn.Module, gradient_checkpointing: bool, device: torch.device) -> bool:
    """Channels-last speeds up CNN training on GPUs and on CPUs (about 1.3x here), but torch 2.13's CPU (oneDNN)
    backward crashes (segfault) for 8-channel convolutions and under activation checkpointing: on a CPU, use it
    only outside those cases."""
    if device.type != "cpu":
        return True
    vision = model.config.vision_config
    try:
        widths = hidden_state_widths(vision)
    except ValueError:  # not a CNN: no convolution but the patch embedding
        widths = [16]
    return not gradient_checkpointing and min(widths) >= 16


def fused_optimizer(device: torch.device) -> bool:
    """AdamW's fused CUDA kernel updates every parameter in one launch (and never reads back to the host)."""
    return device.type == "cuda"


def tune_backends(device: torch.device) -> None:
    """On CUDA: TF32 for float32 matrix multiplications and convolutions (the parts autocast leaves in float32),
    and cuDNN autotuning, which pays off because every step has the same input shapes. Uses the fp32_precision
    API only: torch refuses a mix with the legacy `allow_tf32` flags."""
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    torch.backends.cudnn.conv.fp32_precision = "tf32"
    torch.backends.cudnn.benchmark = True


def text_length_groups(device: torch.device) -> int:
    """How many groups of similar caption length the text tower encodes a batch in (1: the padded batch at once).

    A batch pads its captions to the longest: with the knowledge base's captions (30 tokens on average, padded to 64
    in a batch of 64) half of the text tower's work is padding. On a CPU, four groups cut to their own longest
    caption drop most of it (the main job 1.13x faster in fp32 on an AVX2 CPU). On a GPU the grouping's reads of
    the lengths back to the host would stall the device every step, and small launches cost more than the padding.
    """
    return 4 if device.type == "cpu" else 1
