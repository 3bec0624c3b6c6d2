"""Locking towers, as in LiT / open_clip (the model itself comes from `visionclip.factory`)."""

from __future__ import annotations

from torch import nn

from modeling_visionclip import hold_absent_squeeze_excitation

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
