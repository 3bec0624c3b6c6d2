"""The model as training uses it: built from the preset or pretrained towers, towers locked as configured (LiT),
activation checkpointing, and weights in the channels-last layout where that is safe."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from accelerate import Accelerator
from torch import nn

from modeling_visionclip import VisionCLIPModel
from processing_visionclip import VisionCLIPProcessor

from ..factory import build_model
from ..hardware import channels_last_is_safe
from ..tower_locking import freeze_unreached_vision_parameters, lock_tower
from .config import TrainConfig
from .distributed import refuse_fsdp
from .supervised import freeze_text_side


@dataclass
class TrainingModel:
    """The bare model, its processor, the batch-norm layers of locked towers (kept in eval mode so that their
    running statistics stay fixed), and whether image batches go in channels-last."""

    model: VisionCLIPModel
    processor: VisionCLIPProcessor
    frozen_norms: list[nn.Module]
    channels_last: bool


def prepare_model(config: TrainConfig, accelerator: Accelerator) -> TrainingModel:
    """The model of `config` (random initialisation from the global generators: seed them first), ready to be
    given to `accelerator.prepare`."""
    model, processor = build_model(config.preset, config.vision_tower, config.text_tower)
    refuse_fsdp(accelerator, model)
    frozen = []
    if config.lock_image:
        frozen += lock_tower(model.vision_model, config.lock_image_unlocked_layers)
    if config.lock_text:
        frozen += lock_tower(model.text_model, config.lock_text_unlocked_layers)
    freeze_unreached_vision_parameters(model)
    if config.objective == "supervised":
        freeze_text_side(model)
    if config.gradient_checkpointing:
        model.activation_checkpointing_enable()
    channels_last = config.channels_last and channels_last_is_safe(
        model, config.gradient_checkpointing, accelerator.device
    )
    if channels_last:  # weights in the inputs' layout, or every convolution converts one or the other
        model.to(memory_format=torch.channels_last)
    return TrainingModel(model, processor, frozen, channels_last)
