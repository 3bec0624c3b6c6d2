from __future__ import annotations

import pytest
import torch

from modeling_visionclip import VisionCLIPModel
from tests.tiny_towers import TINY_LITE, TINY_VISION, tiny_config
from visionclip.factory import build_model
from visionclip.tower_locking import freeze_unreached_vision_parameters, lock_tower, tower_blocks


def test_lock_keeps_last_blocks_trainable_and_reports_frozen_batch_norms():
    model, _ = build_model("small")
    frozen_norms = lock_tower(model.vision_model, unlocked_blocks=1)
    stages = tower_blocks(model.vision_model)
    assert all(not p.requires_grad for stage in list(stages)[:-1] for p in stage.parameters())
    assert all(p.requires_grad for p in stages[-1].parameters())
    assert not any(p.requires_grad for p in model.vision_model.embedder.parameters())
    assert frozen_norms and not any(n in list(stages[-1].modules()) for n in frozen_norms)
    lock_tower(model.text_model, unlocked_blocks=1)
    layers = tower_blocks(model.text_model)
    assert [any(p.requires_grad for p in layer.parameters()) for layer in layers] == [False, True]
    assert model.visual_projection.weight.requires_grad  # projections are never locked
    with pytest.raises(ValueError, match="has 2"):
        lock_tower(model.text_model, unlocked_blocks=9)


def test_an_efficientnet_lite_tower_locks_by_blocks_and_its_absent_squeeze_excitation_stays_frozen():
    model, _ = build_model("small-pretrained", vision_tower="none", text_tower="none")
    lock_tower(model.vision_model, unlocked_blocks=2)
    blocks = tower_blocks(model.vision_model)
    assert blocks is model.vision_model.encoder.blocks
    for index, block in enumerate(blocks):
        assert not any(p.requires_grad for p in block.squeeze_excite.parameters())
        assert block.depthwise_conv.depthwise_conv.weight.requires_grad == (index >= len(blocks) - 2)


def test_unlocking_the_last_blocks_also_unlocks_what_follows_them_in_the_tower():
    model, _ = build_model("small-pretrained", vision_tower="none", text_tower="none")
    frozen_norms = lock_tower(model.vision_model, unlocked_blocks=1)
    encoder = model.vision_model.encoder
    assert encoder.top_conv.weight.requires_grad and encoder.top_bn.weight.requires_grad
    assert encoder.top_bn not in frozen_norms
    assert not model.vision_model.embeddings.convolution.weight.requires_grad
    lock_tower(model.vision_model, unlocked_blocks=0)
    assert not encoder.top_conv.weight.requires_grad


@pytest.mark.parametrize(("vision", "layers", "unreached"), [
    (TINY_LITE, [-2, -1], {"encoder.top_conv.weight", "encoder.top_bn.weight", "encoder.top_bn.bias"}),
    (TINY_LITE, [3], None),  # every block after the third, and the head
    (TINY_LITE, None, set()),
    (TINY_VISION, [0, -1], set()),  # ResNet's last stage is its last hidden state: everything is reached
])  # fmt: skip
def test_parameters_the_image_features_never_reach_are_frozen(vision, layers, unreached):
    model = VisionCLIPModel(tiny_config(vision_config=vision, vision_feature_layers=layers)).train()
    statistics = {k: v.clone() for k, v in model.vision_model.state_dict().items() if "running" in k}

    frozen = set(freeze_unreached_vision_parameters(model))

    if unreached is None:
        blocks = tower_blocks(model.vision_model)
        later = {f"encoder.blocks.{i}." for i in range(3, len(blocks))} | {"encoder.top_"}
        assert frozen and all(any(name.startswith(prefix) for prefix in later) for name in frozen)
    else:
        assert frozen == unreached
    assert all(not p.requires_grad for n, p in model.vision_model.named_parameters() if n in frozen)
    assert all(
        p.requires_grad for n, p in model.vision_model.named_parameters() if n not in frozen and "squeeze" not in n
    )
    assert model.training
    for key, value in model.vision_model.state_dict().items():
        if key in statistics:
            assert torch.equal(value, statistics[key]), key
