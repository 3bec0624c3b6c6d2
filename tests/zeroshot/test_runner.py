"""The evaluation runner's random-init baseline: a batch-norm tower (EfficientNet-Lite's shape) gives random
features, not one embedding for every image."""

from __future__ import annotations

import json

import pytest
import torch

import eval_zeroshot
from configuration_visionclip import VisionCLIPConfig
from modeling_visionclip import VisionCLIPModel
from tests.tiny_towers import TINY_LITE
from visionclip.factory import build_model
from visionclip.paths import real_data_dir
from visionclip.zeroshot.data import EvalItem
from visionclip.zeroshot.engine import embed_images
from visionclip.zeroshot.runner import estimate_batch_norm_statistics, random_baseline


@pytest.fixture(scope="module")
def lite_model_and_processor():
    """The tiny preset (64 px, its tokenizer and text tower) with an EfficientNet-Lite-shaped vision tower."""
    tiny, processor = build_model("tiny")
    config = VisionCLIPConfig(**{**tiny.config.to_dict(), "vision_config": TINY_LITE})
    return VisionCLIPModel(config).eval(), processor


@pytest.fixture(scope="module")
def photos(real_photos):
    return [EvalItem(path.name, path, 0) for path in real_photos[:12]]


def batch_norms(model) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def test_the_random_baseline_of_a_batch_norm_tower_gives_different_images_different_embeddings(
    lite_model_and_processor, photos
):
    model, processor = lite_model_and_processor
    baseline = random_baseline(model, seed=0)
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in batch_norms(baseline))  # not N(0, 0.02)
    fresh = {name: tensor.clone() for name, tensor in baseline.state_dict().items()}
    momenta = [m.momentum for m in batch_norms(baseline)]
    assert estimate_batch_norm_statistics(baseline, processor.image_processor, photos, batch_size=5) == len(
        batch_norms(baseline)
    )
    vectors = embed_images(baseline, processor.image_processor, photos, batch_size=5).vectors
    distances = torch.cdist(vectors, vectors) + torch.eye(len(photos))
    assert distances.min() > 1e-3, "two photographs got the same embedding"
    # only the batch norms' statistics changed, and they are back in evaluation mode with their own momentum
    changed = {name for name, tensor in baseline.state_dict().items() if not torch.equal(tensor, fresh[name])}
    assert changed and all(
        name.rsplit(".", 1)[1] in {"running_mean", "running_var", "num_batches_tracked"} for name in changed
    ), changed
    assert not any(m.training for m in baseline.modules())
    assert [m.momentum for m in batch_norms(baseline)] == momenta


def test_the_statistics_are_those_of_the_last_set_alone(lite_model_and_processor, photos):
    model, processor = lite_model_and_processor
    once, twice = random_baseline(model, seed=0), random_baseline(model, seed=0)
    estimate_batch_norm_statistics(once, processor.image_processor, photos[6:])
    estimate_batch_norm_statistics(twice, processor.image_processor, photos[:6])
    estimate_batch_norm_statistics(twice, processor.image_processor, photos[6:])
    for a, b in zip(batch_norms(once), batch_norms(twice), strict=True):
        torch.testing.assert_close(a.running_mean, b.running_mean)
        torch.testing.assert_close(a.running_var, b.running_var)


def test_eval_zeroshot_reports_a_random_baseline_that_is_not_constant(lite_model_and_processor, tmp_path):
    model, processor = lite_model_and_processor
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    argv = ["--model", str(tmp_path / "model"), "--dataset", f"hrf:{real_data_dir() / 'hrf' / 'labels.csv'}"]
    argv += ["--modes", "zero-shot", "--bootstrap", "0", "--num-workers", "0", "--output-dir", str(tmp_path / "out")]
    assert eval_zeroshot.main(argv) == 0
    entries = json.loads((tmp_path / "out" / "results.json").read_text())
    baseline = next(e for e in entries if e["model"] == "random init (same architecture)")
    assert baseline["metrics"]["auroc"] != 0.5, "every image got the same embedding"
    assert "batch-norm statistics estimated on this set's 45 images" in baseline["evaluated_on"]
    trained = next(e for e in entries if e["model"] != baseline["model"])
    assert "batch-norm" not in trained["evaluated_on"]
