"""VisionCLIP model configuration."""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

# Bio_ClinicalBERT (the FLAIR text tower) is a cased BERT-base with this vocabulary size.
BIO_CLINICAL_BERT_VOCAB_SIZE = 28996


@strict
class VisionCLIPConfig(PreTrainedConfig):
    r"""
    Configuration of a [`VisionCLIPModel`]: a vision tower and a text tower (any transformers architecture, nested
    as their own configs), linear projections into a shared space and a learnable temperature.

    The defaults are the reference reconstruction of FLAIR: a ResNet-50 vision tower, a BERT-base text tower shaped
    like Bio_ClinicalBERT, 512-d projections and an initial temperature of 0.07.

    Args:
        vision_config (`PreTrainedConfig` or `dict`, *optional*):
            Vision tower config, e.g. ResNet, ConvNeXt or ViT. A dict needs a `model_type` (default `"resnet"`).
        text_config (`PreTrainedConfig` or `dict`, *optional*):
            Text tower config, any BERT-family encoder. A dict needs a `model_type` (default `"bert"`).
        projection_dim (`int`, *optional*, defaults to 512):
            Size of the shared image-text embedding space.
        logit_scale_init_value (`float`, *optional*, defaults to 2.6592):
            Initial value of the *log* logit scale (log(1 / 0.07), as in CLIP).
        logit_scale_max (`float`, *optional*, defaults to 100.0):
            Upper bound of the logit scale itself (not its log); forward and training clamp to it.
        text_pooling (`str`, *optional*, defaults to `"cls"`):
            How a caption becomes one vector: the `[CLS]` hidden state, the masked `mean` of hidden states, or the
            tower's own `pooler` output.
        zero_shot_tasks (`dict`, *optional*):
            Recommended zero-shot tasks, `{task: {"description", "ordinal", "classes": [...], "prompts": [[...]]}}`
            (the serialised form of the project's `visionclip.zeroshot.tasks.ZeroShotTask`), saved with the model so
            that `VisionCLIPModel.zero_shot(task=...)` works from a downloaded folder.
        prompt_templates (`list[str]`, *optional*):
            Templates with one `{}` used to turn free-form class names into prompt ensembles.
        initializer_factor (`float`, *optional*, defaults to 1.0):
            Scale of the projection initialisation.
        vision_feature_layers (`list[int]`, *optional*):
            Which of a CNN vision tower's `hidden_states` make the image features (indices as the tower returns them
            with `output_hidden_states=True`: 0 is the stem, negative counts from the end): the maps are resized
            to the finest of them, stacked along channels and averaged over positions before the projection (for
            maps of one size, the concatenated averages). `None` takes the tower's own pooled output. Stages
            before an ImageNet head keep what that head, trained for ImageNet's classes, discards.

    Example:

    ```python
    >>> from configuration_visionclip import VisionCLIPConfig
    >>> config = VisionCLIPConfig(vision_config={"model_type": "convnext"}, projection_dim=256)
    ```"""

    model_type = "visionclip"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="resnet"),
        "text_config": SubConfigSpec(
            config_class=AutoConfig, model_type="bert", init_kwargs={"vocab_size": BIO_CLINICAL_BERT_VOCAB_SIZE}
        ),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    projection_dim: int = 512
    logit_scale_init_value: float | int = 2.6592
    logit_scale_max: float | int = 100.0
    text_pooling: Literal["cls", "mean", "pooler"] = "cls"
    zero_shot_tasks: dict | None = None
    prompt_templates: list | None = None
    initializer_factor: float | int = 1.0
    vision_feature_layers: list | None = None

    def __post_init__(self, **kwargs):
        if self.projection_dim <= 0:
            raise ValueError(f"projection_dim must be positive, got {self.projection_dim}")
        if self.logit_scale_max <= 0:
            raise ValueError(f"logit_scale_max must be positive, got {self.logit_scale_max}")
        if self.text_pooling not in ("cls", "mean", "pooler"):
            raise ValueError(f"text_pooling must be 'cls', 'mean' or 'pooler', got {self.text_pooling!r}")
        for template in self.prompt_templates or []:
            if not isinstance(template, str) or template.count("{}") != 1:
                raise ValueError(f"prompt template {template!r} must be a string containing '{{}}' exactly once")
        layers = self.vision_feature_layers
        if layers is not None and (
            not isinstance(layers, list)
            or not layers
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers)
            or len(set(layers)) != len(layers)
        ):
            raise ValueError(f"vision_feature_layers must be a non-empty list of distinct integers, got {layers!r}")
        super().__post_init__(**kwargs)

    @classmethod
    def from_vision_text_configs(
        cls, vision_config: PreTrainedConfig, text_config: PreTrainedConfig, **kwargs
    ) -> "VisionCLIPConfig":
        """Build a config from two tower configs (e.g. read from pretrained checkpoints)."""
        return cls(vision_config=vision_config.to_dict(), text_config=text_config.to_dict(), **kwargs)


VisionCLIPConfig.register_for_auto_class()

__all__ = ["VisionCLIPConfig"]
