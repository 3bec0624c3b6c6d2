"""Locking towers, as in LiT / open_clip (the model itself comes from `visionclip.factory`)."""

from __future__ import annotations

import torch
from torch import nn

from towers_visionclip import hold_absent_squeeze_excitation

_BLOCK_LISTS = ("encoder.stages", "encoder.blocks", "encoder.layer", "encoder.layers", "layers")
# Layers after the last block that feed the pooled features: unlocked with it (EfficientNet's 1x1 head convolution,
# ConvNeXt's and ViT's final norms), as open_clip unlocks a timm trunk's head with its last groups.
_TRAILING_LAYERS = ("encoder.top_conv", "encoder.top_bn", "layernorm", "post_layernorm")


def tower_blocks(tower: nn.Module) -> nn.ModuleList:
    """The repeated blocks of a tower: ResNet/ConvNeXt stages, EfficientNet blocks, BERT or ViT layers."""
    for path in _BLOCK_LISTS:
        module = tower
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, nn.ModuleList | nn.Sequential):
            return module
    raise ValueError(f"Cannot find the blocks of {type(tower).__name__} to leave unlocked")


def trailing_layers(tower: nn.Module) -> list[nn.Module]:
    """The layers between a tower's last block and its output that it has (see `_TRAILING_LAYERS`)."""
    found = []
    for path in _TRAILING_LAYERS:
        module = tower
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, nn.Module):
            found.append(module)
    return found


def lock_tower(tower: nn.Module, unlocked_blocks: int = 0) -> list[nn.Module]:
    """Freeze a tower except its last `unlocked_blocks` blocks and the layers after them; returns the frozen batch-norm layers, which the
    trainer keeps in eval mode so their running statistics stay fixed."""
    for parameter in tower.parameters():
        parameter.requires_grad_(False)
    unlocked = []
    if unlocked_blocks:
        blocks = tower_blocks(tower)
        if unlocked_blocks > len(blocks):
            raise ValueError(f"Cannot leave {unlocked_blocks} blocks unlocked: the tower has {len(blocks)}")
        unlocked = list(blocks)[-unlocked_blocks:] + trailing_layers(tower)
        for block in unlocked:
            for parameter in block.parameters():
                parameter.requires_grad_(True)
        hold_absent_squeeze_excitation(tower)  # an unlocked block's left-out squeeze-excitation stays frozen
    unlocked_ids = {id(m) for block in unlocked for m in block.modules()}
    return [m for m in tower.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in unlocked_ids]


def freeze_unreached_vision_parameters(model: nn.Module) -> list[str]:
    """Freeze the image tower's trainable parameters that the image features never reach; returns their names.

    With `vision_feature_layers`, what follows the last chosen hidden state (EfficientNet's head convolution,
    ConvNeXt's final norm) computes nothing the model uses: frozen, it gets no optimizer state and no weight decay,
    and distributed training does not wait for its gradients. Found by one backward pass of a blank image at the
    tower's configured size, in eval mode (batch-norm statistics untouched, no random numbers drawn)."""
    if not getattr(model.config, "vision_feature_layers", None):
        return []
    trainable = [(name, p) for name, p in model.vision_model.named_parameters() if p.requires_grad]
    if not trainable:
        return []
    size = getattr(model.config.vision_config, "image_size", 64)
    size = size if isinstance(size, int) else 64
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.enable_grad():
            blank = torch.zeros(1, 3, size, size, device=model.visual_projection.weight.device)
            features = model.get_image_features(blank).pooler_output
            grads = torch.autograd.grad(features.sum(), [p for _, p in trainable], allow_unused=True)
    finally:
        for module, training in modes.items():
            module.training = training
    unreached = [(name, parameter) for (name, parameter), grad in zip(trainable, grads, strict=True) if grad is None]
    for _, parameter in unreached:
        parameter.requires_grad_(False)
    return [name for name, _ in unreached]
