"""Evaluating one model on one dataset: zero-shot with prompt ensembles, few-shot and cross-validated probes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import EvalDataset
from .embed import embed_images
from .probe import cross_validated, fit_predict, k_shot_indices
from .report import score

MODES = ("zero-shot", "few-shot", "cross-validated")


@dataclass
class EvalOptions:
    modes: tuple[str, ...] = MODES
    eval_split: str = "test"  # zero-shot and few-shot are scored on this split (all images without a split column)
    fewshot_split: str = "fewshot"  # few-shot probes train on this split when the dataset has one
    shots: int = 5  # otherwise: this many images per class, drawn from the images outside the eval split
    probe_c: float = 1.0
    batch_size: int = 32
    num_workers: int = 0
    bootstrap: int = 1000
    seed: int = 0


def load_model(spec: str):
    """(model, processor) from a saved folder or Hub id, or from a training checkpoint folder."""
    path = Path(spec)
    if (path / "trainer_state.json").is_file():
        from safetensors.torch import load_file

        from ..training.towers import build_model

        config = json.loads((path / "trainer_state.json").read_text())["config"]
        model, processor = build_model(config["preset"], config.get("vision_tower"), config.get("text_tower"))
        model.load_state_dict(load_file(path / "model.safetensors"))
        return model.eval(), processor
    if not path.exists() and spec.count("/") != 1:
        raise FileNotFoundError(f"Model {spec!r}: no such folder, and not a Hub id (owner/name)")
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(spec, trust_remote_code=True)
    return model.eval(), AutoProcessor.from_pretrained(spec, trust_remote_code=True)


def random_baseline(model, seed: int = 0):
    """The same architecture with freshly initialised weights."""
    torch.manual_seed(seed)
    return type(model)(model.config).eval()


def zero_shot_probs(model, tokenizer, dataset: EvalDataset, vectors: torch.Tensor) -> np.ndarray:
    """Softmax over classes of the scaled cosine similarity to each class's prompt-ensemble embedding."""
    classifier = model.zero_shot_classifier(dataset.task.class_prompts(), tokenizer).cpu()
    logits = model.logit_scale_value().detach().float().cpu() * vectors @ classifier.t()
    return logits.softmax(-1).numpy()


def evaluate_dataset(
    model, processor, model_name: str, dataset: EvalDataset, options: EvalOptions
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Entries (one per applicable mode) and the raw scores needed for plots."""
    embedded = embed_images(model, processor.image_processor, dataset.items, options.batch_size, options.num_workers)
    vectors, items = embedded.vectors, embedded.items
    x = vectors.numpy()
    y = np.array([item.label for item in items])
    split = np.array([item.split or "" for item in items])
    has_split = any(split)
    test = (split == options.eval_split) if has_split else np.ones(len(items), dtype=bool)
    if not test.any():
        raise ValueError(f"{dataset.name}: no images in split {options.eval_split!r} (splits: {sorted(set(split))})")
    num_classes = len(dataset.task.labels)
    runs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if "zero-shot" in options.modes:
        runs["zero-shot"] = (zero_shot_probs(model, processor.tokenizer, dataset, vectors[test]), y[test])
    if "few-shot" in options.modes:
        if has_split and (split == options.fewshot_split).any():
            train = np.flatnonzero(split == options.fewshot_split)
        else:
            train = k_shot_indices(y, np.flatnonzero(~test), options.shots, options.seed)
        if len(train) and len(np.unique(y[train])) > 1:
            probe_test = test.copy()
            probe_test[train] = False
            runs["few-shot"] = (
                fit_predict(x[train], y[train], x[probe_test], num_classes, options.probe_c),
                y[probe_test],
            )
    if "cross-validated" in options.modes and all(item.fold is not None for item in items):
        folds = np.array([item.fold for item in items])
        runs["cross-validated"] = (cross_validated(x, y, folds, num_classes, options.probe_c), y)
    entries, raw = [], {}
    for mode, (probs, references) in runs.items():
        entry = {
            "model": model_name,
            "dataset": dataset.name,
            "task": dataset.task.name,
            "mode": mode,
            "split": options.eval_split if mode != "cross-validated" and has_split else "all",
            "labels": list(dataset.task.labels),
            "source": dataset.source,
            "metrics": score(probs, references, dataset.task.ordinal, options.bootstrap, options.seed),
            "unreadable": [{"image": image, "error": error} for image, error in embedded.failures],
        }
        entries.append(entry)
        raw[mode] = (probs, references)
    return entries, raw
