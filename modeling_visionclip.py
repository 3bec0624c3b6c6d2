"""PyTorch VisionCLIP model: a CLIP-style dual encoder for colour fundus photographs."""

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.utils import ModelOutput, logging

try:
    from .configuration_visionclip import VisionCLIPConfig
    from .explaining_visionclip import ExplainResult, VisionCLIPExplainMixin
    from .towers_visionclip import (
        checkpointed_forward,
        hold_absent_squeeze_excitation,
        load_tower,
        vision_feature_size,
    )
    from .zeroshot_visionclip import VisionCLIPZeroShotMixin, ZeroShotResult
except ImportError:  # imported as a top-level module (tests, scripts)
    from configuration_visionclip import VisionCLIPConfig
    from explaining_visionclip import ExplainResult, VisionCLIPExplainMixin
    from towers_visionclip import (
        checkpointed_forward,
        hold_absent_squeeze_excitation,
        load_tower,
        vision_feature_size,
    )
    from zeroshot_visionclip import VisionCLIPZeroShotMixin, ZeroShotResult

logger = logging.get_logger(__name__)


def contrastive_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a square `(batch, batch)` similarity matrix against its diagonal."""
    return nn.functional.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


def clip_loss(logits_per_text: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a local batch: mean of the text-to-image and image-to-text losses."""
    return (contrastive_loss(logits_per_text) + contrastive_loss(logits_per_text.t())) / 2.0


@dataclass
class VisionCLIPOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `return_loss=True`):
        Symmetric contrastive loss over the batch.
    logits_per_image (`torch.FloatTensor` of shape `(image_batch_size, text_batch_size)`):
        Scaled cosine similarities between every image and every text.
    logits_per_text (`torch.FloatTensor` of shape `(text_batch_size, image_batch_size)`):
        The transpose of `logits_per_image`.
    text_embeds (`torch.FloatTensor` of shape `(text_batch_size, projection_dim)`):
        L2-normalised projected text embeddings.
    image_embeds (`torch.FloatTensor` of shape `(image_batch_size, projection_dim)`):
        L2-normalised projected image embeddings.
    text_model_output, vision_model_output (`BaseModelOutputWithPooling`):
        The raw outputs of the two towers.
    """

    loss: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in self.values())


class VisionCLIPPreTrainedModel(PreTrainedModel):
    config: VisionCLIPConfig
    config_class = VisionCLIPConfig
    base_model_prefix = "visionclip"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True

    def _init_weights(self, module: nn.Module) -> None:
        """Initialise the projections and the temperature; the towers initialise themselves."""
        if isinstance(module, VisionCLIPModel):
            factor = self.config.initializer_factor
            init.normal_(module.visual_projection.weight, std=module.vision_embed_dim**-0.5 * factor)
            init.normal_(module.text_projection.weight, std=module.text_embed_dim**-0.5 * factor)
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)
        elif isinstance(module, VisionCLIPForImageClassification):
            factor = self.config.initializer_factor
            init.normal_(module.visual_projection.weight, std=module.vision_embed_dim**-0.5 * factor)
            init.zeros_(module.classifier.weight)
            init.zeros_(module.classifier.bias)


class VisionCLIPModel(VisionCLIPExplainMixin, VisionCLIPZeroShotMixin, VisionCLIPPreTrainedModel):
    """Vision tower + text tower (any transformers `AutoModel`), bias-free linear projections and a temperature;
    `zero_shot` comes from `VisionCLIPZeroShotMixin` (zeroshot_visionclip.py), `explain` (heatmaps) from
    `VisionCLIPExplainMixin` (explaining_visionclip.py)."""

    def __init__(
        self,
        config: VisionCLIPConfig,
        vision_model: PreTrainedModel | None = None,
        text_model: PreTrainedModel | None = None,
    ):
        super().__init__(config)
        self.vision_model = vision_model if vision_model is not None else AutoModel.from_config(config.vision_config)
        self.text_model = text_model if text_model is not None else AutoModel.from_config(config.text_config)
        if config.text_pooling != "pooler" and getattr(self.text_model, "pooler", None) is not None:
            self.text_model.pooler = None  # unused: would hold untrained weights and stall DDP's unused-param check
        self.config.vision_config = self.vision_model.config
        self.config.text_config = self.text_model.config

        self.vision_embed_dim = vision_feature_size(config.vision_config, config.vision_feature_layers)
        self.text_embed_dim = config.text_config.hidden_size
        self.visual_projection = nn.Linear(self.vision_embed_dim, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(self.text_embed_dim, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.empty(()))
        self._text_forward_args = set(inspect.signature(self.text_model.forward).parameters)
        self.post_init()
        hold_absent_squeeze_excitation(self.vision_model)

    # ----------------------------------------------------------------- towers
    def get_image_features(self, pixel_values: torch.Tensor, **kwargs) -> BaseModelOutputWithPooling:
        """`pixel_values` `(batch, 3, H, W)` -> output whose `pooler_output` is the projected, unnormalised
        embedding `(batch, projection_dim)`."""
        pixel_values = pixel_values.to(self.visual_projection.weight.dtype)
        if not torch.is_grad_enabled():
            # channels-last activations make inference convolutions markedly faster; training callers choose
            # the layout themselves (torch 2.13's CPU backward crashes on some channels-last shapes)
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        if self.config.vision_feature_layers:
            kwargs["output_hidden_states"] = True
        outputs = self.vision_model(pixel_values=pixel_values, return_dict=True, **kwargs)
        outputs.pooler_output = self._project_pooled(outputs)
        return outputs

    def _project_pooled(self, outputs) -> torch.Tensor:
        """The image features projected: the chosen hidden states' averages (`vision_feature_layers`), else the
        tower's pooled output (or the mean of a CNN's map, a transformer's first token)."""
        if self.config.vision_feature_layers:
            return self.visual_projection(self._feature_map(outputs).mean(dim=(2, 3)))
        pooled = outputs.pooler_output
        if pooled is None:
            hidden = outputs.last_hidden_state
            pooled = hidden.mean(dim=(2, 3)) if hidden.dim() == 4 else hidden[:, 0]
        return self.visual_projection(pooled.flatten(1))

    def _feature_map(self, outputs) -> torch.Tensor:
        """The `vision_feature_layers` hidden states `(B, C_i, h_i, w_i)`, each resized to the finest of them,
        concatenated: `(B, sum C_i, h, w)`."""
        maps = [outputs.hidden_states[index] for index in self.config.vision_feature_layers]
        size = max((tuple(m.shape[-2:]) for m in maps), key=lambda hw: hw[0] * hw[1])
        resized = [
            m if tuple(m.shape[-2:]) == size else nn.functional.interpolate(m, size=size, mode="bilinear")
            for m in maps
        ]
        return torch.cat(resized, dim=1)

    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        length_groups: int = 1,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """`input_ids` `(batch, seq)` -> output whose `pooler_output` is the projected, unnormalised embedding
        `(batch, projection_dim)`. Sequences longer than the tower's positions are truncated.

        With `length_groups` > 1, right-padded texts are encoded in that many groups of similar length, each cut to
        its own longest text: the same embeddings (up to float rounding) without the work spent on padding, which is
        most of it when a batch pads short captions to its longest. (`last_hidden_state` then differs at padded
        positions, whose values mean nothing either way.)
        """
        inputs = self._text_inputs(input_ids, attention_mask, token_type_ids, position_ids)
        groups = _groups_by_length(inputs["attention_mask"], length_groups) if length_groups > 1 else None
        if groups is None:
            outputs = self.text_model(**inputs, return_dict=True, **kwargs)
            pooled = self._pool_text(outputs.last_hidden_state, outputs.pooler_output, inputs["attention_mask"])
        else:
            outputs = self._encode_text_groups(inputs, groups, **kwargs)
            pooled = outputs.pooler_output
        outputs.pooler_output = self.text_projection(pooled)
        return outputs

    def _pool_text(self, hidden: torch.Tensor, tower_pooled: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
        """One vector per text `(batch, hidden)` from the tower's `(batch, seq, hidden)` states (`text_pooling`)."""
        if self.config.text_pooling == "pooler":
            return tower_pooled
        if self.config.text_pooling == "mean":
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return hidden[:, 0]

    def _encode_text_groups(
        self, inputs: dict[str, torch.Tensor], groups: list[tuple[torch.Tensor, int]], **kwargs
    ) -> BaseModelOutputWithPooling:
        """Run the text tower on each `(rows, length)` group cut to `length` tokens; reassemble in batch order, with
        `pooler_output` holding the pooled (not yet projected) vectors."""
        batch, width = inputs["input_ids"].shape
        hidden, pooled = None, None
        for rows, length in groups:
            part = {
                key: (value[rows] if value.shape[0] == batch else value)[:, :length] for key, value in inputs.items()
            }
            outputs = self.text_model(**part, return_dict=True, **kwargs)
            states = nn.functional.pad(outputs.last_hidden_state, (0, 0, 0, width - length))
            vectors = self._pool_text(outputs.last_hidden_state, outputs.pooler_output, part["attention_mask"])
            if hidden is None:
                hidden = states.new_zeros(batch, *states.shape[1:])
                pooled = vectors.new_zeros(batch, *vectors.shape[1:])
            hidden, pooled = hidden.index_copy(0, rows, states), pooled.index_copy(0, rows, vectors)
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=pooled)

    def _text_inputs(self, input_ids, attention_mask, token_type_ids, position_ids) -> dict[str, torch.Tensor]:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
            "position_ids": position_ids,
        }
        max_positions = getattr(self.config.text_config, "max_position_embeddings", None)
        if max_positions and input_ids.shape[1] > max_positions:
            logger.warning_once(
                f"Text of {input_ids.shape[1]} tokens truncated to the text tower's {max_positions} positions."
            )
            inputs = {k: v[:, :max_positions] if v is not None else None for k, v in inputs.items()}
        return {k: v for k, v in inputs.items() if v is not None and k in self._text_forward_args}

    def encode_image(self, pixel_values: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """`(batch, 3, H, W)` -> `(batch, projection_dim)` image embeddings, L2-normalised by default."""
        embeds = self.get_image_features(pixel_values).pooler_output
        return nn.functional.normalize(embeds, dim=-1) if normalize else embeds

    def encode_text(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        normalize: bool = True,
    ) -> torch.Tensor:
        """`(batch, seq)` token ids -> `(batch, projection_dim)` text embeddings, L2-normalised by default."""
        embeds = self.get_text_features(input_ids, attention_mask, token_type_ids).pooler_output
        return nn.functional.normalize(embeds, dim=-1) if normalize else embeds

    def logit_scale_value(self) -> torch.Tensor:
        """The temperature-inverse applied to cosine similarities, `exp(logit_scale)` clamped to the maximum."""
        return self.logit_scale.exp().clamp(max=self.config.logit_scale_max)

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        return_loss: bool | None = None,
        return_dict: bool | None = None,
        text_length_groups: int = 1,
        **kwargs,
    ) -> VisionCLIPOutput | tuple:
        """Images `(B_i, 3, H, W)` and texts `(B_t, seq)` -> `logits_per_image` `(B_i, B_t)`, `logits_per_text`
        `(B_t, B_i)`, normalised embeddings and, with `return_loss=True` (`B_i == B_t`), the symmetric
        contrastive loss. Extra tokenizer outputs are accepted and ignored where the text tower does not use them.
        `text_length_groups`: see `get_text_features(length_groups=...)`.
        """
        if input_ids is None or pixel_values is None:
            raise ValueError("VisionCLIPModel.forward needs both `input_ids` and `pixel_values`")
        vision_outputs = self.get_image_features(pixel_values)
        text_outputs = self.get_text_features(
            input_ids, attention_mask, token_type_ids, position_ids, length_groups=text_length_groups
        )
        image_embeds = nn.functional.normalize(vision_outputs.pooler_output, dim=-1)
        text_embeds = nn.functional.normalize(text_outputs.pooler_output, dim=-1)

        logits_per_text = self.logit_scale_value() * text_embeds @ image_embeds.t()
        logits_per_image = logits_per_text.t()
        loss = clip_loss(logits_per_text) if return_loss else None

        output = VisionCLIPOutput(
            loss=loss,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()

    # ------------------------------------------------- checkpointing, saving
    def _set_gradient_checkpointing(
        self, enable: bool = True, gradient_checkpointing_func=checkpoint, every_n_layers: int = 1
    ) -> None:
        super()._set_gradient_checkpointing(enable, gradient_checkpointing_func, every_n_layers)
        # CNN towers (ResNet, ConvNeXt, EfficientNet) have no checkpointing of their own: checkpoint each stage.
        if getattr(self.vision_model, "supports_gradient_checkpointing", False):
            return
        encoder = getattr(self.vision_model, "encoder", None)
        for stage in getattr(encoder, "stages", None) or getattr(encoder, "blocks", []):
            if enable:
                stage.forward = checkpointed_forward(stage, gradient_checkpointing_func)
            else:
                stage.__dict__.pop("forward", None)

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        # The zero-shot pipeline loads through AutoModelForZeroShotImageClassification, which
        # `register_for_auto_class` cannot record beside AutoModel.
        module = type(self).__module__.rsplit(".", 1)[-1]
        self.config.auto_map = {
            **(getattr(self.config, "auto_map", None) or {}),
            "AutoModelForZeroShotImageClassification": f"{module}.{type(self).__name__}",
        }
        super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, *args, **kwargs) -> "VisionCLIPModel":
        loaded = super().from_pretrained(*args, **kwargs)
        # loading puts new parameter objects in place, trainable again
        hold_absent_squeeze_excitation((loaded[0] if isinstance(loaded, tuple) else loaded).vision_model)
        return loaded

    @classmethod
    def from_vision_text_pretrained(
        cls, vision_model_name_or_path: str | None, text_model_name_or_path: str | None, **kwargs
    ) -> "VisionCLIPModel":
        """Start from two pretrained towers (Hub ids or local folders); projections and temperature are new.

        `vision_*` / `text_*` keyword arguments go to the towers' `from_pretrained` (`vision_model=` /
        `text_model=` pass ready tower instances instead); the rest (e.g. `projection_dim`, `text_pooling`,
        `zero_shot_tasks`) go to [`VisionCLIPConfig`].
        """
        config_fields = set(VisionCLIPConfig.__dataclass_fields__)
        tower_kwargs = {"vision": {}, "text": {}}
        for key in list(kwargs):
            which, _, rest = key.partition("_")
            if which in tower_kwargs and key not in config_fields:
                tower_kwargs[which][rest] = kwargs.pop(key)
        towers = {
            which: options.pop("model", None) or load_tower(name, which, options)
            for (which, options), name in zip(
                tower_kwargs.items(), (vision_model_name_or_path, text_model_name_or_path), strict=True
            )
        }
        config = VisionCLIPConfig.from_vision_text_configs(towers["vision"].config, towers["text"].config, **kwargs)
        model = cls(config, vision_model=towers["vision"], text_model=towers["text"])
        logger.warning(
            "VisionCLIP projections and logit scale are newly initialised: train the model before using it."
        )
        return model


class VisionCLIPForImageClassification(VisionCLIPPreTrainedModel):
    """The VisionCLIP image tower and visual projection with a linear head over the L2-normalised embedding:
    `logits = classifier(normalize(visual_projection(pool(vision_model(pixel_values)))))`, `num_labels` classes
    named by the config's `id2label`.

    A head whose rows are the classes' prompt-ensemble text embeddings times the logit scale (and bias 0) computes
    exactly the zero-shot logits of the [`VisionCLIPModel`] it came from (`from_clip_model`)."""

    input_modalities = ("image",)
    main_input_name = "pixel_values"

    def __init__(self, config: VisionCLIPConfig, vision_model: PreTrainedModel | None = None):
        super().__init__(config)
        self.vision_model = vision_model if vision_model is not None else AutoModel.from_config(config.vision_config)
        self.config.vision_config = self.vision_model.config
        self.vision_embed_dim = vision_feature_size(config.vision_config, config.vision_feature_layers)
        self.visual_projection = nn.Linear(self.vision_embed_dim, config.projection_dim, bias=False)
        self.classifier = nn.Linear(config.projection_dim, config.num_labels)
        self.post_init()
        hold_absent_squeeze_excitation(self.vision_model)

    get_image_features = VisionCLIPModel.get_image_features
    _project_pooled = VisionCLIPModel._project_pooled
    _feature_map = VisionCLIPModel._feature_map
    encode_image = VisionCLIPModel.encode_image

    @classmethod
    def from_clip_model(
        cls, model: VisionCLIPModel, id2label: dict[int, str], class_embeddings: torch.Tensor | None = None
    ) -> "VisionCLIPForImageClassification":
        """A classifier sharing nothing with `model` (its image tower and projection copied) for the classes
        `id2label`; with `class_embeddings` `(num_labels, projection_dim)` (`model.zero_shot_classifier`), the head
        reproduces `model`'s zero-shot logits, else it starts at zero."""
        import copy

        config = VisionCLIPConfig.from_dict(model.config.to_dict())
        config.id2label = {int(index): str(name) for index, name in id2label.items()}
        config.label2id = {name: index for index, name in config.id2label.items()}
        config.architectures = [cls.__name__]
        classifier = cls(config, vision_model=copy.deepcopy(model.vision_model))
        with torch.no_grad():
            classifier.visual_projection.weight.copy_(model.visual_projection.weight)
            if class_embeddings is not None:
                if class_embeddings.shape != classifier.classifier.weight.shape:
                    raise ValueError(
                        f"class embeddings of shape {tuple(class_embeddings.shape)} do not fit a head of shape "
                        f"{tuple(classifier.classifier.weight.shape)}"
                    )
                scale = model.logit_scale_value().float()
                classifier.classifier.weight.copy_(scale * class_embeddings.float().to(classifier.classifier.weight))
                classifier.classifier.bias.zero_()
        return classifier

    def forward(
        self,
        pixel_values: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput | tuple:
        """Images `(batch, 3, H, W)` -> `logits` `(batch, num_labels)`; with `labels` `(batch,)`, the cross-entropy
        `loss`. Extra processor outputs are ignored."""
        if pixel_values is None:
            raise ValueError("VisionCLIPForImageClassification.forward needs `pixel_values`")
        embeds = nn.functional.normalize(self.get_image_features(pixel_values).pooler_output, dim=-1)
        logits = self.classifier(embeds.to(self.classifier.weight.dtype))
        loss = nn.functional.cross_entropy(logits.float(), labels.to(logits.device)) if labels is not None else None
        output = ImageClassifierOutput(loss=loss, logits=logits)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()

    _set_gradient_checkpointing = VisionCLIPModel._set_gradient_checkpointing

    @classmethod
    def from_pretrained(cls, *args, **kwargs) -> "VisionCLIPForImageClassification":
        loaded = super().from_pretrained(*args, **kwargs)
        hold_absent_squeeze_excitation((loaded[0] if isinstance(loaded, tuple) else loaded).vision_model)
        return loaded


def _groups_by_length(attention_mask: torch.Tensor, groups: int) -> list[tuple[torch.Tensor, int]] | None:
    """Row indices of `groups` groups of about equal size, shortest texts first, each with its longest length; None
    where grouping cannot apply (fewer than two rows per group, or padding that is not all on the right)."""
    lengths = attention_mask.sum(dim=1)
    if attention_mask.shape[0] < 2 * groups:
        return None
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    if not torch.equal(attention_mask.bool(), positions < lengths[:, None]):
        return None
    order = lengths.argsort(stable=True)
    return [(rows, max(1, int(lengths[rows[-1]]))) for rows in order.tensor_split(groups)]


VisionCLIPModel.register_for_auto_class("AutoModel")
VisionCLIPForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = [
    "ExplainResult",
    "VisionCLIPForImageClassification",
    "VisionCLIPModel",
    "VisionCLIPPreTrainedModel",
    "VisionCLIPOutput",
    "ZeroShotResult",
]
