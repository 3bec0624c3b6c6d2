"""Evaluating one model on one dataset: zero-shot with prompt ensembles, few-shot and cross-validated probes."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..factory import build_from_config
from .data import EvalDataset, EvalItem
from .engine import class_probabilities, embed_images
from .probe import cross_validated, fit_predict, k_shot_indices
from .report import score
from .units import average_over_units, check_units_keep_together, first_of_each_unit, whole_units

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
    precision: str = "no"  # image encoding: `no` (fp32) or a resolved mixed precision (visionclip.precision)


def random_baseline(model, seed: int = 0):
    """The same architecture with freshly initialised weights, in evaluation mode, as a random-features baseline.

    Each tower keeps its transformers initialisation except for its batch norms, which get PyTorch's (scale 1,
    shift 0): transformers' EfficientNet draws batch-norm scales like weights, from N(0, 0.02), so every block
    multiplies its output by about 0.02 and a fresh EfficientNet-Lite0 gives every image the same embedding (every
    AUROC exactly 0.5); ResNet's are already 1 and 0. The batch norms' running statistics are still their initial
    ones (mean 0, variance 1), which no image's activations have: before embedding a set with this model,
    re-estimate them on that set's images (`estimate_batch_norm_statistics`; `evaluate_dataset(...,
    estimate_batch_norm=True)` does), the usual "random features with recalibrated batch norm" baseline. Only the
    images are used, never their labels."""
    baseline = build_from_config(model.config, seed)
    for norm in batch_norms(baseline):
        norm.reset_parameters()
    return baseline.eval()


def batch_norms(model: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    """The batch norms that keep running statistics."""
    return [
        module
        for module in model.modules()
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.track_running_stats
    ]


def estimate_batch_norm_statistics(
    model, image_processor, items: list[EvalItem], batch_size: int = 32, num_workers: int = 0
) -> int:
    """Replace every batch norm's running statistics with those of `items`' images (no labels used): one pass in
    fp32 without gradients, the batch norms in training mode with cumulative averages (momentum None, as
    `torch.optim.swa_utils.update_bn`) and every other module in evaluation mode (no dropout, no stochastic depth).
    Earlier statistics do not count. Returns how many batch norms were re-estimated; the model is left in
    evaluation mode with its momenta."""
    norms = batch_norms(model)
    momenta = [norm.momentum for norm in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    try:
        with torch.no_grad():
            embed_images(model, image_processor, items, batch_size, num_workers)
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.eval()
    return len(norms)


NO_SPLIT = "the dataset has no split column"


def text_side_trained(model) -> bool:
    """False for the supervised-pretraining baseline (`train.py --objective supervised`, recorded in its config as
    `training_objective`): its text side is the preset's, untrained, so its zero-shot scores would mean nothing."""
    return getattr(model.config, "training_objective", "contrastive") != "supervised"


def shots_of(labels: np.ndarray, candidates: np.ndarray, options: EvalOptions, units: list[str] | None) -> np.ndarray:
    """`options.shots` images per class from `candidates`, or where the labels belong to units, every image of
    `options.shots` units per class (a probe never trains on part of a unit it is scored on)."""
    if units is None:
        return k_shot_indices(labels, candidates, options.shots, options.seed)
    chosen = k_shot_indices(labels, first_of_each_unit(candidates, units), options.shots, options.seed)
    return whole_units(chosen, candidates, units)


def evaluate_dataset(
    model,
    processor,
    model_name: str,
    dataset: EvalDataset,
    options: EvalOptions,
    *,
    estimate_batch_norm: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Entries (one per applicable mode) and the raw scores needed for plots.

    A dataset without a split column is evaluated whole: zero-shot scores every image, a few-shot probe trains on
    `options.shots` images per class and scores the others. Each entry's `evaluated_on` says which images it
    scored. `estimate_batch_norm` (for `random_baseline`'s model): batch-norm statistics from all of this set's
    images first."""
    calibrated = ""
    if estimate_batch_norm and estimate_batch_norm_statistics(
        model, processor.image_processor, dataset.items, options.batch_size, options.num_workers
    ):
        calibrated = f"; batch-norm statistics estimated on this set's {len(dataset.items)} images (not their labels)"
    embedded = embed_images(
        model, processor.image_processor, dataset.items, options.batch_size, options.num_workers, options.precision
    )
    vectors, items = embedded.vectors, embedded.items
    x = vectors.numpy()
    y = np.array([item.label for item in items])
    split = np.array([item.split or "" for item in items])
    has_split = any(split)
    test = (split == options.eval_split) if has_split else np.ones(len(items), dtype=bool)
    if not test.any():
        raise ValueError(f"{dataset.name}: no images in split {options.eval_split!r} (splits: {sorted(set(split))})")
    scored = f"split {options.eval_split!r}" if has_split else f"all images ({NO_SPLIT})"
    num_classes = len(dataset.task.labels)
    groups = np.array([item.group for item in items]) if all(item.group is not None for item in items) else None
    units = [item.unit for item in items] if all(item.unit is not None for item in items) else None
    if units is not None:
        check_units_keep_together(units, [item.split for item in items], [item.fold for item in items])
    runs: dict[str, tuple[np.ndarray, np.ndarray, str]] = {}  # mode -> probabilities, the scored rows, description
    if "zero-shot" in options.modes and not text_side_trained(model):
        warnings.warn(
            f"{model_name}: no zero-shot on {dataset.name}: the model's text side is untrained (training_objective "
            "supervised); its image embeddings are scored by the few-shot and cross-validated probes",
            stacklevel=2,
        )
    elif "zero-shot" in options.modes:
        runs["zero-shot"] = (
            class_probabilities(model, processor.tokenizer, dataset.task, vectors[test]),
            np.flatnonzero(test),
            scored,
        )
    if "few-shot" in options.modes:
        if has_split and (split == options.fewshot_split).any():
            train = np.flatnonzero(split == options.fewshot_split)
            described = f"{scored}; the probe trains on split {options.fewshot_split!r}"
        elif has_split:
            train = shots_of(y, np.flatnonzero(~test), options, units)
            kind = "images" if units is None else "units"
            described = f"{scored}; the probe trains on {options.shots} {kind} per class from the other splits"
        else:
            train = shots_of(y, np.arange(len(items)), options, units)
            kind = "" if units is None else " units"
            described = f"all images but the {options.shots}{kind} per class the probe trains on ({NO_SPLIT})"
        probe_test = test.copy()
        probe_test[train] = False
        if len(train) and len(np.unique(y[train])) > 1 and probe_test.any():
            probs = fit_predict(x[train], y[train], x[probe_test], num_classes, options.probe_c)
            runs["few-shot"] = (probs, np.flatnonzero(probe_test), described)
        else:
            reason = f"{described}, which leaves no two classes to train on"
            warnings.warn(f"{dataset.name}: no few-shot probe: {reason}", stacklevel=2)
    if "cross-validated" in options.modes and all(item.fold is not None for item in items):
        folds = np.array([item.fold for item in items])
        runs["cross-validated"] = (
            cross_validated(x, y, folds, num_classes, options.probe_c),
            np.arange(len(items)),
            "all images, each fold scored by a probe trained on the others",
        )
    entries, raw = [], {}
    for mode, (probs, rows, described) in runs.items():
        references, row_groups = y[rows], None if groups is None else groups[rows].tolist()
        if units is not None:
            by_unit = average_over_units(probs, references, [units[i] for i in rows], row_groups)
            probs, references, row_groups = by_unit.probabilities, by_unit.references, by_unit.groups
            low, high = int(by_unit.images.min()), int(by_unit.images.max())
            described += (
                f"; scored per unit: the class probabilities of each of the {len(references)} units' images "
                f"({low if low == high else f'{low}-{high}'} each) averaged"
            )
        described += calibrated
        if row_groups is not None:
            described += f"; confidence intervals resample the {len(set(row_groups))} groups (patients), not images"
        entry = {
            "model": model_name,
            "dataset": dataset.name,
            "task": dataset.task.name,
            "mode": mode,
            "split": options.eval_split if mode != "cross-validated" and has_split else "all",
            "evaluated_on": described,
            "labels": list(dataset.task.labels),
            "source": dataset.source,
            "metrics": score(probs, references, dataset.task.ordinal, options.bootstrap, options.seed, row_groups),
            "unreadable": [{"image": image, "error": error} for image, error in embedded.failures],
        }
        entries.append(entry)
        raw[mode] = (probs, references)
    return entries, raw
