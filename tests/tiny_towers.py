"""Tower configurations small enough for tests, shared by the modules that build them."""

from __future__ import annotations

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
