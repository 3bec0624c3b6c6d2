"""Tower configurations small enough for tests, shared by the modules that build them."""

from __future__ import annotations

from configuration_visionclip import VisionCLIPConfig

# EfficientNet-Lite0's block shape (ReLU6, no squeeze-excitation, its batch-norm settings) at a width and depth that
# run in milliseconds; freshly initialised, its batch norms' initial statistics make it constant in eval mode
TINY_LITE = {
    "model_type": "efficientnet",
    "width_coefficient": 0.25,
    "depth_coefficient": 0.1,
    "image_size": 64,
    "hidden_act": "relu6",
    "squeeze_expansion_ratio": 1e-9,
    "batch_norm_momentum": 0.01,
    "batch_norm_eps": 1e-3,
    "hidden_dim": 320,  # the head: 1280 at this width
    "drop_connect_rate": 0.0,
}

TINY_VISION = {
    "model_type": "resnet",
    "embedding_size": 8,
    "hidden_sizes": [8, 16],
    "depths": [1, 1],
    "layer_type": "basic",
}
TINY_TEXT = {
    "model_type": "bert",
    "vocab_size": 99,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 24,
}


def tiny_config(**overrides) -> VisionCLIPConfig:
    """A VisionCLIP config with the tiny ResNet and BERT towers; `overrides` replace its fields."""
    kwargs = {
        "vision_config": TINY_VISION,
        "text_config": TINY_TEXT,
        "projection_dim": 16,
        "prompt_templates": ["a fundus photograph of {}."],
    }
    kwargs.update(overrides)
    return VisionCLIPConfig(**kwargs)
