"""Zero-shot classification of fundus photographs with a VisionCLIP model.

    python predict.py                                    # untrained `tiny` preset on the real HRF photos (smoke run)
    python predict.py --model ./visionclip --task glaucoma photo1.jpg photo2.png
    python predict.py --model ./visionclip --classes "cataract,no cataract" images/*.jpg
    python predict.py --model ./visionclip --task glaucoma --explain overlays/ photo1.jpg   # + heatmaps

`--model` is a saved folder or Hub id (loaded with trust_remote_code), a training checkpoint folder or a preset
name (random weights).
`--explain OUT_DIR` also writes, per image and class, a PNG of where the model looks (`--explain-method`: dense
text-image `similarity`, its undivided dot product `cam` (the default), or `gradcam`) over the photograph, with the
field-of-view outline and the score; the maps come from the image enlarged 3 times (`--explain-upscale`, 1-4), the
setting that points at lesions best (README, "Where the model looks").
`--classes` takes one comma-separated value, so class names and image paths cannot run into each other; a class
name that is an existing file or ends like an image file is refused. Without images, the bundled real HRF test
photographs are classified (a smoke run), with an accuracy only when the classes are their labels.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

from ..explain import load_explainable, upscale_keywords, write_overlays
from ..explain.options import add_overlay_options, overlay_upscale
from ..factory import load_model, source_kind
from ..paths import real_data_dir
from ..precision import PRECISIONS, inference_autocast, resolve_precision
from ..zeroshot.data import IMAGE_SUFFIXES


def default_images() -> tuple[list[Path], list[str] | None]:
    folder = real_data_dir() / "hrf"
    with open(folder / "labels.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "test"]
    mapping = {"healthy": "healthy", "diabetic_retinopathy": "diabetic retinopathy", "glaucoma": "glaucoma"}
    return [folder / row["file"] for row in rows], [mapping[row["label"]] for row in rows]


def parse_classes(text: str) -> list[str]:
    """`"cataract, no cataract"` -> `["cataract", "no cataract"]`; `ValueError` for names that are (or look like)
    image files and for fewer than two distinct names."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if Path(name).exists():
            raise ValueError(
                f"--classes: {name!r} is an existing file, not a class name; give images after the options"
            )
        if Path(name).suffix.lower() in IMAGE_SUFFIXES:
            raise ValueError(f"--classes: {name!r} looks like an image file, not a class name")
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"--classes needs at least two distinct comma-separated class names, got {text!r}")
    return names


def missing_images_message(missing: list[str], classes: str | None) -> str:
    message = f"image files not found: {', '.join(missing)}"
    names = [name for name in missing if Path(name).suffix.lower() not in IMAGE_SUFFIXES]
    if classes is not None and names:
        joined = ",".join([classes, *names])
        message += f' (--classes takes one comma-separated value: --classes "{joined}")'
    return message


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", type=Path, help="image files (default: the real HRF test photos)")
    parser.add_argument(
        "--model", default="tiny", help="saved folder, Hub id, training checkpoint or preset name (default: tiny)"
    )
    parser.add_argument("--task", help="a recommended zero-shot task saved with the model")
    parser.add_argument("--classes", help='free-form class names instead of a task, comma-separated: "a,b,c"')
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--mixed-precision", choices=PRECISIONS, default="auto", help="auto: bf16 where the device runs it natively"
    )
    parser.add_argument("--explain", type=Path, metavar="OUT_DIR", help="write heatmap overlays (PNG) here")
    add_overlay_options(parser)
    args = parser.parse_args(argv)
    if args.task and args.classes:
        parser.error("give --task or --classes, not both")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    args.explain_upscale = overlay_upscale(parser, args)
    missing = [str(path) for path in args.images if not path.is_file()]
    if missing:
        parser.error(missing_images_message(missing, args.classes))
    try:
        class_names = parse_classes(args.classes) if args.classes is not None else None
    except ValueError as error:
        parser.error(str(error))
    if args.images:
        images, truth = args.images, None
    else:
        images, truth = default_images()
        print(f"no images given: classifying the bundled HRF test photographs ({len(images)})")
    task = args.task or (None if class_names else "diagnosis")

    torch.manual_seed(0)
    try:
        if source_kind(args.model) == "preset":
            print(f"note: preset {args.model!r} has random weights; predictions are chance-level until it is trained")
        if args.explain:
            model, processor = load_explainable(args.model, list(upscale_keywords(args.explain_upscale)))
        else:
            model, processor = load_model(args.model)
    except (ValueError, FileNotFoundError, OSError) as error:
        parser.error(str(error))
    device = next(model.parameters()).device
    precision = resolve_precision(args.mixed_precision, device)
    print(precision.summary())
    if precision.warning:
        print(f"{parser.prog}: warning: {precision.warning}", file=sys.stderr)
    try:
        with inference_autocast(precision.mixed_precision, device):
            result = model.zero_shot(images, processor, task=task, class_names=class_names, batch_size=args.batch_size)
    except ValueError as error:
        parser.error(str(error))
    print(f"task: {task or 'free-form'}; classes: {result.class_names}")
    for path, prediction, probs in zip(images, result.predictions, result.probs, strict=True):
        print(f"{path.name:24s} {prediction:28s} p={probs.max().item():.3f}")
    if truth is not None and set(truth) <= set(result.class_names):
        correct = sum(p == t for p, t in zip(result.predictions, truth, strict=True))
        print(
            f"accuracy on {len(truth)} labelled photos: {correct / len(truth):.3f} "
            f"(chance {1 / len(result.class_names):.3f})"
        )
    elif truth is not None:
        print(f"no accuracy: the classes are not the photographs' labels ({', '.join(sorted(set(truth)))})")
    if args.explain:
        with inference_autocast(precision.mixed_precision, device):
            explained = model.explain(
                images,
                processor,
                task=task,
                class_names=class_names,
                method=args.explain_method,
                batch_size=args.batch_size,
                **upscale_keywords(args.explain_upscale),
            )
        written = write_overlays(explained, images, args.explain)
        print(f"{len(written)} {args.explain_method} overlays written to {args.explain}")
    return 0
