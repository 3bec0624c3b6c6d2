"""Fundus classification metrics for the `evaluate` library, computed with scikit-learn.

    import evaluate
    from visionclip.resources import FUNDUS_METRIC, data_path
    metric = evaluate.load(str(data_path(FUNDUS_METRIC)))   # a local path: works offline
    metric.compute(predictions=[0, 2, 1], references=[0, 1, 1], prediction_scores=[[.8, .1, .1], ...],
                   ordinal=True, bootstrap_samples=1000)

Returns accuracy, balanced accuracy (mean per-class recall, FLAIR's "ACA"), macro-F1, one-vs-rest AUROC (macro
over classes that have positives and negatives; the positive class's AUROC for two classes), quadratic weighted
kappa for ordinal tasks, 95% percentile-bootstrap confidence intervals (`<metric>_ci`) and a per-class table.
"""

import warnings

import datasets
import evaluate
import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

_CITATION = """\
@article{cohen1968weighted, title={Weighted kappa}, author={Cohen, Jacob}, journal={Psychological Bulletin},
  volume={70}, number={4}, pages={213--220}, year={1968}}
"""

_KWARGS = """
Args:
    predictions (`list[int]`): predicted class index per image.
    references (`list[int]`): true class index per image.
    prediction_scores (`list[list[float]]`, optional): per-class scores (e.g. probabilities) for AUROC.
    num_classes (`int`, optional): number of classes (default: inferred from the data and the scores).
    ordinal (`bool`): the classes are ordered grades: also report quadratic weighted kappa.
    bootstrap_samples (`int`): resamples for the confidence intervals (0 disables them).
    confidence_level (`float`): default 0.95.
    seed (`int`): bootstrap seed.
    groups (`list`, optional): the patient (or eye) each image belongs to. Images of one patient are not independent,
        so the bootstrap then resamples whole groups (a cluster bootstrap) instead of images.
Returns:
    accuracy, balanced_accuracy, macro_f1, auroc (or None), quadratic_kappa (ordinal only), `<metric>_ci` pairs,
    per_class (list of dicts: class, precision, recall, f1, support, auroc), confusion_matrix, num_samples,
    num_groups (with `groups`).
"""


def auroc(references: np.ndarray, scores: np.ndarray, num_classes: int) -> float | None:
    """Binary: AUROC of class 1. Multiclass: mean one-vs-rest AUROC over classes with both outcomes present."""
    if scores is None:
        return None
    if num_classes == 2:
        positives = references == 1
        return float(roc_auc_score(positives, scores[:, 1])) if 0 < positives.sum() < len(references) else None
    values = per_class_auroc(references, scores, num_classes)
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def per_class_auroc(references: np.ndarray, scores: np.ndarray, num_classes: int) -> list[float | None]:
    result = []
    for index in range(num_classes):
        positives = references == index
        defined = scores is not None and 0 < positives.sum() < len(references)
        result.append(float(roc_auc_score(positives, scores[:, index])) if defined else None)
    return result


def point_metrics(predictions, references, scores, num_classes: int, ordinal: bool) -> dict:
    labels = list(range(num_classes))
    values = {
        "accuracy": float(accuracy_score(references, predictions)),
        "balanced_accuracy": float(balanced_accuracy_score(references, predictions)),
        "macro_f1": float(f1_score(references, predictions, labels=labels, average="macro", zero_division=0)),
        "auroc": auroc(references, scores, num_classes),
    }
    if ordinal:
        kappa = cohen_kappa_score(references, predictions, labels=labels, weights="quadratic")
        values["quadratic_kappa"] = float(kappa) if np.isfinite(kappa) else None
    return values


@evaluate.utils.file_utils.add_start_docstrings(__doc__, _KWARGS)
class FundusClassification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation=_CITATION,
            inputs_description=_KWARGS,
            # per-class scores are a keyword of compute(), so they are optional
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html"],
        )

    def _compute(
        self,
        predictions,
        references,
        prediction_scores=None,
        num_classes=None,
        ordinal=False,
        bootstrap_samples=1000,
        confidence_level=0.95,
        seed=0,
        groups=None,
    ):
        predictions, references = np.asarray(predictions), np.asarray(references)
        if groups is not None and len(groups) != len(references):
            raise ValueError(f"groups has {len(groups)} entries for {len(references)} samples")
        scores = None if prediction_scores is None else np.asarray(prediction_scores, dtype=np.float64)
        inferred = int(max(predictions.max(initial=0), references.max(initial=0))) + 1
        num_classes = num_classes or (scores.shape[1] if scores is not None else inferred)
        if len(references) == 0:
            raise ValueError("No samples to score")
        if inferred > num_classes:
            raise ValueError(f"A class index ({inferred - 1}) is outside num_classes={num_classes}")
        result = point_metrics(predictions, references, scores, num_classes, ordinal)
        result.update(
            bootstrap_intervals(
                predictions,
                references,
                scores,
                num_classes,
                ordinal,
                bootstrap_samples,
                confidence_level,
                seed,
                resampling_units(groups, len(references)),
            )
        )
        precision, recall, f1, support = precision_recall_fscore_support(
            references, predictions, labels=list(range(num_classes)), zero_division=0
        )
        aurocs = per_class_auroc(references, scores, num_classes) if scores is not None else [None] * num_classes
        result["per_class"] = [
            {
                "class": i,
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
                "auroc": aurocs[i],
            }
            for i in range(num_classes)
        ]
        result["confusion_matrix"] = confusion_matrix(
            references, predictions, labels=list(range(num_classes))
        ).tolist()
        result["num_samples"] = int(len(references))
        if groups is not None:
            result["num_groups"] = len(set(groups))
        return result


def resampling_units(groups, count: int) -> list[np.ndarray]:
    """The indices the bootstrap draws together: one image each, or every image of a group."""
    if groups is None:
        return [np.array([i]) for i in range(count)]
    members: dict = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    return [np.array(indices) for indices in members.values()]


def bootstrap_intervals(predictions, references, scores, num_classes, ordinal, samples, level, seed, units) -> dict:
    """Percentile bootstrap: resample units (images, or groups of images) with replacement, recompute every
    metric."""
    if not samples:
        return {}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(samples):
        index = np.concatenate([units[i] for i in rng.integers(0, len(units), len(units))])
        with warnings.catch_warnings():  # a resample may miss a class; the metric is then skipped or partial
            warnings.simplefilter("ignore")
            resampled = point_metrics(
                predictions[index], references[index], None if scores is None else scores[index], num_classes, ordinal
            )
        for name, value in resampled.items():
            draws.setdefault(name, []).append(np.nan if value is None else value)
    tail = (1 - level) / 2 * 100
    intervals = {}
    for name, values in draws.items():
        values = np.asarray(values)
        finite = values[np.isfinite(values)]
        intervals[f"{name}_ci"] = (
            [float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))] if len(finite) else None
        )
    return intervals
