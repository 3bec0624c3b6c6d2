"""Does what a model's image tower sees in generated images carry over to real photographs?

A logistic regression is fitted on the pooled image features (before the projection, L2-normalised) of generated
images labelled by each task's `synthetic` classes, then scored on the task's real photographs: macro one-vs-rest
AUROC, no real label used in fitting. It is the ceiling of what a locked image tower plus a learned text side can
reach zero-shot, and it chose the main job's locked ImageNet tower (README, "Results of the main job").

    python bench/synthetic_to_real_probe.py --model small-pretrained [--count 300]
    python bench/synthetic_to_real_probe.py --model runs/visionclip-small/model
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from torch import nn

from visionclip.cli.eval import default_datasets
from visionclip.factory import load_model
from visionclip.zeroshot.data import from_synthetic, load_eval_dataset
from visionclip.zeroshot.engine import embed_images
from visionclip.zeroshot.tasks import load_task

COLUMNS = {"file": "file", "label": "label", "split": "split", "fold": "fold", "group": None, "image": "image"}


def pooled_features(model) -> None:
    """Make `encode_image` return the tower's pooled features: an identity in place of the projection."""
    width = model.visual_projection.in_features
    identity = nn.Linear(width, width, bias=False)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(width))
    model.visual_projection = identity


def features(model, processor, items) -> tuple[np.ndarray, np.ndarray]:
    embedded = embed_images(model, processor.image_processor, items, 32, 0)
    return embedded.vectors.numpy(), np.array([item.label for item in embedded.items])


def macro_auroc(labels: np.ndarray, probabilities: np.ndarray, classes: np.ndarray, num_classes: int) -> float:
    if num_classes == 2:
        return float(roc_auc_score(labels, probabilities[:, list(classes).index(1)]))
    full = np.zeros((len(labels), num_classes))
    full[:, classes] = probabilities
    return float(roc_auc_score(labels, full, multi_class="ovr", average="macro"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small-pretrained", help="saved folder, checkpoint or preset")
    parser.add_argument("--count", type=int, default=300, help="generated images per task")
    args = parser.parse_args(argv)
    model, processor = load_model(args.model)
    pooled_features(model)
    print("| set | C | synthetic -> real AUROC | generated / real images |\n|---|---|---|---|")
    for spec in default_datasets():
        name, _, path = spec.partition(":")
        task = load_task(name)
        x_real, y_real = features(model, processor, load_eval_dataset(path, task, name, COLUMNS).items)
        generated = from_synthetic(task, name, args.count, seed=1, image_size=384)
        x_syn, y_syn = features(model, processor, generated.items)
        for c in (0.1, 1.0, 10.0):
            fitted = LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(x_syn, y_syn)
            auroc = macro_auroc(y_real, fitted.predict_proba(x_real), fitted.classes_, len(task.labels))
            print(f"| {name} | {c} | {auroc:.3f} | {len(y_syn)} / {len(y_real)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
