"""Scoring with the repository's `evaluate` metric module, and the report: JSON, Markdown, PNG plots, model-index."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from ..resources import FUNDUS_METRIC, data_path

HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "auroc", "quadratic_kappa")


@functools.cache
def metric():
    import evaluate

    return evaluate.load(str(data_path(FUNDUS_METRIC)))


def score(
    probs: np.ndarray,
    references: np.ndarray,
    ordinal: bool,
    bootstrap_samples: int = 1000,
    seed: int = 0,
    groups: list[str] | None = None,
) -> dict[str, Any]:
    """Every metric (with bootstrap CIs) for class probabilities `(n, classes)` against true class indices; with
    `groups` (the patient of each image) the bootstrap resamples patients."""
    return metric().compute(
        predictions=probs.argmax(1).tolist(),
        references=references.tolist(),
        prediction_scores=probs.tolist(),
        num_classes=probs.shape[1],
        ordinal=ordinal,
        bootstrap_samples=bootstrap_samples,
        seed=seed,
        groups=groups,
    )


def _cell(metrics: dict[str, Any], name: str) -> str:
    value = metrics.get(name)
    if value is None:
        return "–"
    interval = metrics.get(f"{name}_ci")
    return f"{value:.3f} [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else f"{value:.3f}"


def markdown_table(entries: list[dict[str, Any]]) -> str:
    """One row per (model, dataset, mode): headline metrics with 95% CIs."""
    lines = [
        "| model | dataset | mode | n | accuracy | balanced acc. (ACA) | macro-F1 | AUROC | quadratic kappa |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in entries:
        metrics = entry["metrics"]
        cells = " | ".join(_cell(metrics, name) for name in HEADLINE)
        lines.append(
            f"| {entry['model']} | {entry['dataset']} | {entry['mode']} | {metrics['num_samples']} | {cells} |"
        )
    return "\n".join(lines)


def per_class_table(entry: dict[str, Any]) -> str:
    lines = [
        f"{entry['model']} / {entry['dataset']} / {entry['mode']}"
        + (f": {entry['evaluated_on']}" if entry.get("evaluated_on") else ""),
        "",
        "| class | precision | recall | F1 | AUROC | support |",
        "|---|---|---|---|---|---|",
    ]
    for row in entry["metrics"]["per_class"]:
        auroc = "–" if row["auroc"] is None else f"{row['auroc']:.3f}"
        lines.append(
            f"| {entry['labels'][row['class']]} | {row['precision']:.3f} | {row['recall']:.3f} | "
            f"{row['f1']:.3f} | {auroc} | {row['support']} |"
        )
    return "\n".join(lines)


def plot_confusion(entry: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(entry["metrics"]["confusion_matrix"])
    labels = entry["labels"]
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(1.2 + 0.9 * len(labels), 1.0 + 0.8 * len(labels)))
    axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            axis.text(
                j, i, str(matrix[i, j]), ha="center", va="center", color="white" if rates[i, j] > 0.5 else "black"
            )
    axis.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"{entry['model']}\n{entry['dataset']}, {entry['mode']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_roc(entry: dict[str, Any], probs: np.ndarray, references: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(4.6, 4.2))
    for index, label in enumerate(entry["labels"]):
        positives = references == index
        if 0 < positives.sum() < len(references):
            fpr, tpr, _ = roc_curve(positives, probs[:, index])
            auroc = entry["metrics"]["per_class"][index]["auroc"]
            axis.plot(fpr, tpr, label=f"{label} (AUROC {auroc:.2f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title(f"{entry['model']}\n{entry['dataset']}, {entry['mode']} (one vs rest)", fontsize=9)
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def model_index(entries: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    """`model-index` results of one model, in the keyword form of `huggingface_hub.EvalResult`."""
    results = []
    for entry in entries:
        if entry["model"] != model:
            continue
        for name in ("accuracy", "balanced_accuracy", "macro_f1", "auroc", "quadratic_kappa"):
            value = entry["metrics"].get(name)
            if value is None:
                continue
            results.append(
                {
                    "task_type": "zero-shot-image-classification"
                    if entry["mode"] == "zero-shot"
                    else "image-classification",
                    "dataset_type": entry["dataset"],
                    "dataset_name": entry["dataset"],
                    "dataset_split": entry.get("split") or "all",
                    "metric_type": {"auroc": "roc_auc", "quadratic_kappa": "cohen_kappa", "macro_f1": "f1"}.get(
                        name, name
                    ),
                    "metric_name": f"{name} ({entry['mode']})",
                    "metric_value": round(float(value), 4),
                }
            )
    return results
