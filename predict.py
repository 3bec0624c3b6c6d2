"""Zero-shot classification of fundus photographs with a VisionCLIP model.

    python predict.py                                    # untrained `tiny` preset on the real HRF photos (smoke run)
    python predict.py --model ./visionclip-small --task glaucoma photo1.jpg photo2.png
    python predict.py --model ./visionclip-small --classes "cataract" "no cataract" images/*.jpg

`--model` is a saved folder or Hub id (loaded with trust_remote_code) or a preset name (random weights).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

from visionclip.paths import real_data_dir
from visionclip.presets import build_model_and_processor, list_presets


def load_model(name: str):
    """A saved folder or Hub id, or a preset name (untrained)."""
    if name in list_presets():
        print(f"note: preset {name!r} has random weights; predictions are chance-level until it is trained")
        return build_model_and_processor(name)
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(name, trust_remote_code=True)
    return model, AutoProcessor.from_pretrained(name, trust_remote_code=True)


def default_images() -> tuple[list[Path], list[str] | None]:
    folder = real_data_dir() / "hrf"
    with open(folder / "labels.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "test"]
    mapping = {"healthy": "healthy", "diabetic_retinopathy": "diabetic retinopathy", "glaucoma": "glaucoma"}
    return [folder / row["file"] for row in rows], [mapping[row["label"]] for row in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", type=Path, help="image files (default: the real HRF test photos)")
    parser.add_argument("--model", default="tiny", help="saved folder, Hub id or preset name (default: tiny)")
    parser.add_argument("--task", help="a recommended zero-shot task saved with the model")
    parser.add_argument("--classes", nargs="+", help="free-form class names instead of a task")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    if args.task and args.classes:
        parser.error("give --task or --classes, not both")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    images, truth = (args.images, None) if args.images else default_images()
    missing = [str(path) for path in images if not path.is_file()]
    if missing:
        parser.error(f"image files not found: {', '.join(missing)}")
    task = args.task or (None if args.classes else "diagnosis")

    torch.manual_seed(0)
    model, processor = load_model(args.model)
    model.eval()
    try:
        result = model.zero_shot(images, processor, task=task, class_names=args.classes, batch_size=args.batch_size)
    except ValueError as error:
        parser.error(str(error))
    print(f"task: {task or 'free-form'}; classes: {result.class_names}")
    for path, prediction, probs in zip(images, result.predictions, result.probs, strict=True):
        print(f"{path.name:24s} {prediction:28s} p={probs.max().item():.3f}")
    if truth is not None:
        correct = sum(p == t for p, t in zip(result.predictions, truth, strict=True))
        print(
            f"accuracy on {len(truth)} labelled photos: {correct / len(truth):.3f} "
            f"(chance {1 / len(result.class_names):.3f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
