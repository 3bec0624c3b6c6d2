"""VisionCLIP's vision and text towers: what the model needs to know about them beyond transformers' own classes.

A remote-code file beside `modeling_visionclip.py`: the width of a tower's image features (its pooled output, or
the hidden states `vision_feature_layers` names), EfficientNet-Lite's absent squeeze-excitation held as exact
identities, batch-norm statistics frozen for recomputed passes (activation checkpointing), and loading a tower
from a Hub id or a local folder.
"""

import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel


def vision_feature_size(vision_config, feature_layers: list[int] | None = None) -> int:
    """Width of a vision tower's image features: with `feature_layers`, the summed widths of those hidden states;
    else its pooled output's, the last stage of a CNN (EfficientNet's head width) or a transformer's hidden size."""
    if feature_layers:
        widths = hidden_state_widths(vision_config)
        if not all(-len(widths) <= index < len(widths) for index in feature_layers):
            raise ValueError(
                f"vision_feature_layers {feature_layers} name hidden states the {vision_config.model_type} tower "
                f"does not have: it returns {len(widths)} (indices {-len(widths)}..{len(widths) - 1})"
            )
        if len({index % len(widths) for index in feature_layers}) != len(feature_layers):
            raise ValueError(f"vision_feature_layers {feature_layers} name one hidden state twice")
        return sum(widths[index] for index in feature_layers)
    if getattr(vision_config, "model_type", None) == "efficientnet":
        return vision_config.hidden_dim
    hidden_sizes = getattr(vision_config, "hidden_sizes", None)
    return hidden_sizes[-1] if hidden_sizes else vision_config.hidden_size


def hidden_state_widths(vision_config) -> list[int]:
    """Channels of each map a CNN tower returns in `hidden_states` (the stem's output, then each block's for
    EfficientNet, each stage's for ResNet and ConvNeXt)."""
    kind = getattr(vision_config, "model_type", None)
    if kind == "efficientnet":
        from transformers.models.efficientnet.modeling_efficientnet import round_filters

        widths = [round_filters(vision_config, 32)]  # the stem, as EfficientNetEmbeddings builds it
        for out_channels, repeats in zip(vision_config.out_channels, vision_config.num_block_repeats, strict=True):
            blocks = math.ceil(vision_config.depth_coefficient * repeats)
            widths += [round_filters(vision_config, out_channels)] * blocks
        return widths
    if kind == "resnet":
        return [vision_config.embedding_size, *vision_config.hidden_sizes]
    if kind in ("convnext", "convnextv2"):
        return [vision_config.hidden_sizes[0], *vision_config.hidden_sizes]
    raise ValueError(
        f"vision_feature_layers needs a CNN tower whose hidden states are maps (efficientnet, resnet, convnext); "
        f"the vision tower is {kind!r}"
    )


# Sigmoid's output for this gate bias is 1.0 in float32, bfloat16 and float16, and its derivative exactly 0.
SQUEEZE_EXCITE_OPEN_BIAS = 100.0


def hold_absent_squeeze_excitation(vision_model: nn.Module) -> int:
    """Make the squeeze-excitation layers that a config leaves out exact identities, frozen; returns how many.

    EfficientNet-Lite has no squeeze-excitation, but transformers' EfficientNet always builds one per block, at least
    one channel wide; a config whose `squeeze_expansion_ratio` rounds the width to zero stands for "none". Such a
    layer scales its input by sigmoid(expand(act(reduce(mean)))): with reduce and expand weights 0 and the expand bias
    `SQUEEZE_EXCITE_OPEN_BIAS` the scale is exactly 1.0 (sigmoid(100) rounds to 1 in float32) whatever the input,
    and every gradient through the gate is exactly 0 (sigmoid'(100) = 1 - 1 = 0), so the block computes what
    Lite's block computes, bit for bit, forward and backward. The parameters are frozen (`requires_grad` False) so
    that no optimizer (weight decay included) moves them."""
    config = getattr(vision_model, "config", None)
    if getattr(config, "model_type", None) != "efficientnet":
        return 0
    ratio = config.squeeze_expansion_ratio
    layers = [m for m in vision_model.modules() if hasattr(m, "dim_se") and int(m.dim * ratio) == 0]
    with torch.no_grad():
        for layer in layers:
            for conv in (layer.reduce, layer.expand):
                conv.weight.zero_()
                conv.bias.zero_()
            layer.expand.bias.fill_(SQUEEZE_EXCITE_OPEN_BIAS)
            for parameter in layer.parameters():
                parameter.requires_grad_(False)
    return len(layers)


@contextmanager
def batch_norm_statistics_frozen(module: nn.Module) -> Iterator[None]:
    """Within this context the training-mode batch norms of `module` still normalise with the batch's own statistics
    but leave their running statistics and counters as they were: for a pass that repeats a forward already counted
    (an activation-checkpoint recomputation, a cached no-grad pass), so that each image updates them once.

    Momentum 0 keeps the running statistics (the recomputation must save the same tensors for backward as the
    forward did, so they are still passed); the counters are put back on exit."""
    norms = [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
    ]
    saved = [(norm.momentum, norm.num_batches_tracked.clone()) for norm in norms]
    for norm in norms:
        norm.momentum = 0.0
    try:
        yield
    finally:
        for norm, (momentum, count) in zip(norms, saved, strict=True):
            norm.momentum = momentum
            norm.num_batches_tracked.copy_(count)


def checkpointed_forward(stage: nn.Module, checkpoint_fn):
    original = type(stage).forward

    def recompute_contexts():
        return nullcontext(), batch_norm_statistics_frozen(stage)

    def forward(*args, **kwargs):
        if stage.training and torch.is_grad_enabled():
            # An eager recomputation repeats the whole forward, statistics update included; torch.compile recomputes
            # only what backward needs (and accepts no other context). context_fn needs use_reentrant=False.
            contexts = {} if torch.compiler.is_compiling() else {"context_fn": recompute_contexts}
            return checkpoint_fn(original, stage, *args, use_reentrant=False, **contexts, **kwargs)
        return original(stage, *args, **kwargs)

    return forward


def load_tower(name_or_path: str, which: str, kwargs: dict[str, Any]) -> PreTrainedModel:
    if not name_or_path:
        raise ValueError(f"A {which} tower name or path is required")
    config = kwargs.pop("config", None) or AutoConfig.from_pretrained(name_or_path)
    if which == "vision" and hasattr(config, "vision_config") and config.model_type == "clip":
        config = config.vision_config  # use the vision half of a CLIP checkpoint
    return AutoModel.from_pretrained(name_or_path, config=config, **kwargs)
