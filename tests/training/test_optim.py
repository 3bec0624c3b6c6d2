from __future__ import annotations

import pytest
import torch

from visionclip.factory import build_model
from visionclip.losses import SigLipLoss
from visionclip.training.optim import build_optimizer, parameter_groups, warmup_cosine


def test_no_weight_decay_on_norms_biases_embeddings_and_scalars():
    model, _ = build_model("tiny")
    decay, no_decay = parameter_groups([model, SigLipLoss()], weight_decay=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "visual_projection.weight" in decayed and "text_projection.weight" in decayed
    assert not any("norm" in n.lower() or n.endswith("bias") or "embeddings" in n or "logit" in n for n in decayed)
    assert no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters())) + 1


def test_warmup_then_cosine_to_the_floor():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=1.0)
    scheduler = warmup_cosine(optimizer, warmup_steps=4, total_steps=20, min_ratio=0.1)
    rates = []
    for _ in range(20):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[4] == pytest.approx(1.0) and all(a >= b for a, b in zip(rates[4:], rates[5:], strict=False))
    assert rates[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(15 / 16 * torch.pi)).item()))
    assert scheduler.get_last_lr()[0] == pytest.approx(0.1)


def test_nothing_to_train_is_an_error():
    model, _ = build_model("tiny")
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="every parameter is frozen"):
        build_optimizer([model], 1e-3, 0.1, (0.9, 0.98), 1e-6)


@pytest.mark.parametrize("fused", [False, True])
def test_fused_adamw_on_request(fused: bool):
    model, _ = build_model("tiny")
    optimizer = build_optimizer([model], 1e-3, 0.1, (0.9, 0.98), 1e-6, fused=fused)
    assert bool(optimizer.defaults["fused"]) is fused


def test_tower_lr_puts_the_towers_in_their_own_groups_and_the_schedule_scales_each_peak():
    model, _ = build_model("tiny")
    optimizer = build_optimizer([model], 1e-3, 0.1, (0.9, 0.98), 1e-6, tower_lr=1e-5)
    rate = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert all(rate[id(p)] == 1e-5 for p in model.vision_model.parameters())
    assert all(rate[id(p)] == 1e-5 for p in model.text_model.parameters())
    assert rate[id(model.visual_projection.weight)] == rate[id(model.logit_scale)] == 1e-3
    assert len(rate) == len(list(model.parameters()))
    scheduler = warmup_cosine(optimizer, warmup_steps=2, total_steps=10, min_ratio=0.01)
    optimizer.step()
    scheduler.step()
    assert sorted({round(lr, 12) for lr in scheduler.get_last_lr()}) == [1e-5, 1e-3]
