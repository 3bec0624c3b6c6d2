"""How far can a locked image tower go on the held-out generated findings?

LiT trains the text side and the projections against a locked image tower, so its zero-shot AUROC on a finding is
bounded by how well the tower's pooled features separate that finding. This fits, per finding, a logistic
regression on the pooled features (before the projection) of generated training images, with every label known,
and scores it on the held-out split that training evaluates on; beside it, the same fit on the model's projected
embeddings and the model's own zero-shot AUROC. Where even the supervised fit stays below a target, no text side
can reach it without training the image tower.

    python bench/locked_tower_ceiling.py --model runs/visionclip/model [--train-count 3000] [--image-size 320]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from synthetic_to_real_probe import pooled_features  # the sibling benchmark (bench/ is the script's path)

from visionclip.factory import load_model
from visionclip.training.config import TrainConfig
from visionclip.training.data import dataset_source, split_files
from visionclip.zeroshot.heldout import HeldOutEvaluator, mean_auroc


def supervised_auroc(train: np.ndarray, present: np.ndarray, test: np.ndarray, test_present: np.ndarray) -> float:
    """AUROC on `test` of a logistic regression fitted on standardised `train` features."""
    mean, std = train.mean(0), train.std(0) + 1e-6
    fitted = LogisticRegression(C=0.1, max_iter=3000).fit((train - mean) / std, present)
    return float(roc_auc_score(test_present, fitted.decision_function((test - mean) / std)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/visionclip/model", help="saved folder, checkpoint or preset")
    parser.add_argument("--train-count", type=int, default=3000, help="generated training images to fit on")
    parser.add_argument("--held-out-count", type=int, default=1200, help="held-out images to score on")
    parser.add_argument(
        "--image-size", type=int, default=None, help="processor input size (px; default: the model's own)"
    )
    args = parser.parse_args(argv)
    if args.train_count < 100 or args.held_out_count < 100:
        parser.error("--train-count and --held-out-count must be at least 100 (AUROC needs both classes)")
    if args.image_size is not None and not 32 <= args.image_size <= 2048:
        parser.error(f"--image-size must be from 32 to 2048 px, got {args.image_size}")
    model, processor = load_model(args.model)
    if args.image_size is not None:
        processor.image_processor.size = {"height": args.image_size, "width": args.image_size}
    model.eval()
    source = dataset_source(TrainConfig())  # the main job's embedded default, generated once and cached
    splits = {
        name: HeldOutEvaluator(split_files(source, name), processor.image_processor, processor.tokenizer, count)
        for name, count in (("train", args.train_count), ("validation", args.held_out_count))
    }
    projected = {name: split.image_embeddings(model).numpy() for name, split in splits.items()}
    zero_shot = splits["validation"].evaluate(model, torch.from_numpy(projected["validation"]))
    pooled_features(model)
    pooled = {name: split.image_embeddings(model).numpy() for name, split in splits.items()}
    print("| finding | fit on pooled features | fit on projected embeddings | model zero-shot |\n|---|---|---|---|")
    fits: dict[str, list[float]] = {"pooled": [], "projected": []}
    for task in splits["train"].tasks:
        present, test_present = splits["train"].present(task), splits["validation"].present(task)
        if min(present.sum(), (~present).sum(), test_present.sum(), (~test_present).sum()) < 5:
            continue
        for kind, features in (("pooled", pooled), ("projected", projected)):
            fits[kind].append(supervised_auroc(features["train"], present, features["validation"], test_present))
        shot = zero_shot[task.name]["auroc"]
        print(f"| {task.name} | {fits['pooled'][-1]:.3f} | {fits['projected'][-1]:.3f} | {shot:.3f} |", flush=True)
    print(f"| mean | {np.mean(fits['pooled']):.3f} | {np.mean(fits['projected']):.3f} | {mean_auroc(zero_shot):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
