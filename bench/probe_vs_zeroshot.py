"""Are the image features or the prompts the limit? Zero-shot AUROC vs a linear probe on the same embeddings.

Embeds held-out generated images and a sample of training images with a trained model, fits one logistic
regression per finding on the training embeddings and compares its held-out AUROC with the zero-shot AUROC (the
prompt ensembles of `visionclip/zeroshot/heldout.py`). A probe far above zero-shot means the text side loses what the image
tower sees; a probe near zero-shot means the image features are the limit.

    python bench/probe_vs_zeroshot.py                                   # the main job's model and data
    python bench/probe_vs_zeroshot.py --model runs/x/model --data ~/.cache/visionclip/<set> --train-samples 4000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from visionclip.training.config import TrainConfig
from visionclip.training.data import embedded_dataset_dir
from visionclip.zeroshot.heldout import HeldOutEvaluator

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_MODEL = ROOT / "runs" / "visionclip" / "model"


def probe_aurocs(train: HeldOutEvaluator, held_out: HeldOutEvaluator, train_x, test_x) -> dict[str, float]:
    """Held-out AUROC of a logistic regression per finding, fitted on the training embeddings `train_x`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    results = {}
    for task in held_out.tasks:
        train_y, test_y = train.present(task), held_out.present(task)
        if len(np.unique(train_y)) < 2 or len(np.unique(test_y)) < 2:
            continue
        classifier = LogisticRegression(max_iter=2000).fit(train_x, train_y)
        results[task.name] = float(roc_auc_score(test_y, classifier.decision_function(test_x)))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a saved VisionCLIP folder")
    parser.add_argument("--data", type=Path, default=None, help="parquet dataset folder (default: embedded set)")
    parser.add_argument("--train-samples", type=int, default=4000, help="training images the probe is fitted on")
    parser.add_argument("--held-out-samples", type=int, default=1200)
    args = parser.parse_args(argv)
    if not (args.model / "config.json").is_file():
        parser.error(f"--model {args.model}: no config.json; train first (accelerate launch train.py)")
    if args.train_samples < 100 or args.held_out_samples < 100:
        parser.error("--train-samples and --held-out-samples must be at least 100")
    data = args.data or embedded_dataset_dir(TrainConfig())
    train_files, held_out_files = sorted(data.glob("data/train-*.parquet")), sorted(data.glob("data/validation-*"))
    if not train_files or not held_out_files:
        parser.error(f"--data {data}: needs data/train-*.parquet and data/validation-*.parquet")

    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(args.model, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(args.model, trust_remote_code=True)
    image_processor, tokenizer = processor.image_processor, processor.tokenizer
    held_out = HeldOutEvaluator([str(f) for f in held_out_files], image_processor, tokenizer, args.held_out_samples)
    train = HeldOutEvaluator([str(f) for f in train_files], image_processor, tokenizer, args.train_samples)
    held_out_embeddings = held_out.image_embeddings(model)
    zero_shot = held_out.evaluate(model, held_out_embeddings)
    probes = probe_aurocs(train, held_out, train.image_embeddings(model).numpy(), held_out_embeddings.numpy())
    print(f"{args.model}: {len(train)} training / {len(held_out)} held-out images")
    print(f"{'finding':28s} {'zero-shot':>9s} {'probe':>7s} {'gap':>7s}")
    for name, probe in probes.items():
        shot = zero_shot[name]["auroc"]
        if shot is not None:
            print(f"{name:28s} {shot:9.3f} {probe:7.3f} {probe - shot:+7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
