"""A whole fine-tuning run: out-of-fold predictions of one classifier per cross-validation fold, scored with
bootstrap CIs, then the classifier trained on every image, which is the one saved."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from modeling_visionclip import VisionCLIPForImageClassification

from ..zeroshot.report import score
from .data import LabelledImages
from .fit import FitOptions, embed, fit, head_probabilities


@dataclass
class FinetuneResult:
    classifier: VisionCLIPForImageClassification
    folds: np.ndarray
    out_of_fold: np.ndarray  # class probabilities of each image from the classifier that did not train on it
    zero_shot: np.ndarray  # the zero-shot classifier's probabilities (the starting point)
    final: np.ndarray  # the saved classifier's probabilities of every image (on which it trained)
    metrics: dict[str, Any]
    zero_shot_metrics: dict[str, Any]


def predict(classifier, image_processor, images: list[np.ndarray], precision: str) -> np.ndarray:
    """Class probabilities `(n, num_labels)` of prepared images."""
    return head_probabilities(classifier, embed(classifier, image_processor, images, precision))


def run_finetune(
    start: VisionCLIPForImageClassification,
    image_processor,
    data: LabelledImages,
    folds: np.ndarray,
    options: FitOptions,
    *,
    ordinal: bool = False,
    bootstrap: int = 1000,
    accelerator=None,
) -> FinetuneResult:
    """Cross-validate `options` on `data` with `folds`, then train the final classifier on all of it. `start` is
    the zero-shot-initialised classifier (the WiSE-FT end point and every mode's starting weights)."""
    out_of_fold = np.zeros((len(data), len(data.classes)))
    for number, fold in enumerate(np.unique(folds)):
        test = folds == fold
        train = np.flatnonzero(~test)
        fold_options = replace(options, seed=options.seed + 1 + number)
        model = fit(
            start,
            image_processor,
            [data.images[i] for i in train],
            data.labels[train],
            fold_options,
            accelerator,
            desc=f"fold {fold}",
        )
        out_of_fold[test] = predict(model, image_processor, [data.images[i] for i in np.flatnonzero(test)], "no")
        del model
    final = fit(start, image_processor, data.images, data.labels, options, accelerator, desc="all images")
    zero_shot = predict(start, image_processor, data.images, "no")
    groups = data.groups
    group_list = None if groups is None else groups.tolist()
    return FinetuneResult(
        classifier=final,
        folds=folds,
        out_of_fold=out_of_fold,
        zero_shot=zero_shot,
        final=predict(final, image_processor, data.images, "no"),
        metrics=score(out_of_fold, data.labels, ordinal, bootstrap, options.seed, group_list),
        zero_shot_metrics=score(zero_shot, data.labels, ordinal, bootstrap, options.seed, group_list),
    )
