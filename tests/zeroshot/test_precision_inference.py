"""Inference in bf16 autocast (what `auto` picks on a CPU or GPU with bf16 units) gives the fp32 results within
tolerance: embeddings, zero-shot probabilities, and eval_zeroshot.py's metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import eval_zeroshot
from visionclip.cli.eval import default_datasets
from visionclip.precision import inference_autocast
from visionclip.zeroshot.data import EvalItem
from visionclip.zeroshot.engine import embed_images


@pytest.fixture(scope="module")
def photos(real_photos) -> list[Path]:
    return real_photos[:12]


def test_bf16_embeddings_match_fp32(tiny_model_and_processor, photos):
    model, processor = tiny_model_and_processor
    items = [EvalItem(p.name, p, 0) for p in photos]
    full = embed_images(model, processor.image_processor, items, batch_size=4, precision="no").vectors
    half = embed_images(model, processor.image_processor, items, batch_size=4, precision="bf16").vectors
    assert half.dtype == torch.float32
    assert not torch.equal(full, half), "bf16 autocast was not applied"
    assert torch.nn.functional.cosine_similarity(full, half).min() > 0.99


def test_zero_shot_probabilities_under_bf16_autocast_match_fp32(tiny_model_and_processor, photos):
    model, processor = tiny_model_and_processor
    full = model.zero_shot(photos, processor, task="glaucoma")
    with inference_autocast("bf16", "cpu"):
        half = model.zero_shot(photos, processor, task="glaucoma")
    assert half.logits.dtype == torch.float32  # scores in fp32 even where the towers ran in bf16
    torch.testing.assert_close(half.probs, full.probs, atol=0.02, rtol=0)


def _zero_shot_accuracy(tiny_folder: Path, out: Path, precision: str, capsys) -> tuple[float, str]:
    args = [
        "--model",
        str(tiny_folder),
        "--output-dir",
        str(out),
        "--mixed-precision",
        precision,
        "--modes",
        "zero-shot",
    ]
    args += [
        "--no-random-baseline",
        "--bootstrap",
        "0",
        "--num-workers",
        "0",
        "--dataset",
        default_datasets()[0],
    ]
    assert eval_zeroshot.main(args) == 0
    entry = json.loads((out / "results.json").read_text())[0]
    return entry["metrics"]["accuracy"], capsys.readouterr().out


def test_eval_zeroshot_resolves_its_precision_and_bf16_keeps_the_metrics(tiny_folder, tmp_path, capsys):
    full, printed = _zero_shot_accuracy(tiny_folder, tmp_path / "fp32", "no", capsys)
    assert "mixed precision no -> no" in printed
    half, printed = _zero_shot_accuracy(tiny_folder, tmp_path / "bf16", "bf16", capsys)
    assert "mixed precision bf16 -> bf16" in printed
    assert round(abs(half - full) * 30) <= 1  # at most one of the 30 HRF test photos changes class
    _, printed = _zero_shot_accuracy(tiny_folder, tmp_path / "auto", "auto", capsys)
    assert "mixed precision auto -> " in printed
