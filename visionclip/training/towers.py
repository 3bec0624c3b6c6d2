"""Building the model to train (preset or pretrained towers) and locking towers, as in LiT / open_clip."""

from __future__ import annotations

from torch import nn

from modeling_visionclip import VisionCLIPModel
from processing_visionclip import VisionCLIPProcessor

from ..presets import build_model_and_processor, load_preset

_BLOCK_LISTS = ("encoder.stages", "encoder.layer", "encoder.layers", "layers")


def build_model(
    preset_name: str, vision_tower: str | None = None, text_tower: str | None = None
) -> tuple[VisionCLIPModel, VisionCLIPProcessor]:
    """A preset's model and processor; with pretrained tower ids/folders, those towers (and the text tower's
    tokenizer) replace the preset's random ones, keeping the preset's projection and image size."""
    preset = load_preset(preset_name)
    if vision_tower is None and text_tower is None:
        return build_model_and_processor(preset)
    from transformers import AutoModel, AutoTokenizer

    processor = preset.build_processor()
    if text_tower is not None:
        processor = VisionCLIPProcessor(processor.image_processor, AutoTokenizer.from_pretrained(text_tower))
    config = preset.build_config(vocab_size=len(processor.tokenizer))
    vision = AutoModel.from_pretrained(vision_tower) if vision_tower else AutoModel.from_config(config.vision_config)
    text = AutoModel.from_pretrained(text_tower) if text_tower else AutoModel.from_config(config.text_config)
    shared = (
        "projection_dim",
        "text_pooling",
        "logit_scale_init_value",
        "logit_scale_max",
        "zero_shot_tasks",
        "prompt_templates",
    )
    model = VisionCLIPModel.from_vision_text_pretrained(
        vision_tower, text_tower, vision_model=vision, text_model=text, **{k: getattr(config, k) for k in shared}
    )
    return model, processor


def tower_blocks(tower: nn.Module) -> nn.ModuleList:
    """The repeated blocks of a tower: ResNet/ConvNeXt stages, BERT or ViT layers."""
    for path in _BLOCK_LISTS:
        module = tower
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, nn.ModuleList | nn.Sequential):
            return module
    raise ValueError(f"Cannot find the blocks of {type(tower).__name__} to leave unlocked")


def lock_tower(tower: nn.Module, unlocked_blocks: int = 0) -> list[nn.Module]:
    """Freeze a tower except its last `unlocked_blocks` blocks; returns the frozen batch-norm layers, which the
    trainer keeps in eval mode so their running statistics stay fixed."""
    for parameter in tower.parameters():
        parameter.requires_grad_(False)
    unlocked = []
    if unlocked_blocks:
        blocks = tower_blocks(tower)
        if unlocked_blocks > len(blocks):
            raise ValueError(f"Cannot leave {unlocked_blocks} blocks unlocked: the tower has {len(blocks)}")
        unlocked = list(blocks)[-unlocked_blocks:]
        for block in unlocked:
            for parameter in block.parameters():
                parameter.requires_grad_(True)
    unlocked_ids = {id(m) for block in unlocked for m in block.modules()}
    return [m for m in tower.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in unlocked_ids]
