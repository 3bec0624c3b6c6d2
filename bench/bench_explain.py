"""Where the model looks, measured: heatmaps against the generator's lesion masks, and heatmap throughput.

On held-out generated photographs (the embedded dataset's validation split: never trained on), for each finding
with something drawn: pointing-game accuracy (the map's maximum in the field of view on the lesion mask, within
`--tolerance` of the image side) and pixel AUROC of the map against the mask, for dense similarity (and its
contrast with the denial), the undivided dot product (`cam`) and Grad-CAM, beside a centre-bias map and a randomly
initialised model's maps (`zeroshot.runner.random_baseline`, batch-norm statistics re-estimated on these images; see
`visionclip/explain/measure.py`). Then images per second of `explain` (each method) and of the plain zero-shot
forward on the same images, in the same run.

`--upscale 2` makes every map (the random model's too) from the image enlarged twice: a grid twice as fine.

    python bench/bench_explain.py --model runs/visionclip/model [--images 600] [--upscale 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from visionclip.explain import load_explainable
from visionclip.explain.measure import MAP_KINDS, finding_questions, generated_cases, measure
from visionclip.precision import PRECISIONS, inference_autocast, resolve_precision
from visionclip.shards import atomic_write_bytes
from visionclip.zeroshot.data import EvalItem
from visionclip.zeroshot.runner import estimate_batch_norm_statistics, random_baseline

LOCAL_SHARE = 0.25  # a finding whose mask covers less than this share of the field on average is "local"
COLUMNS = (
    "similarity",
    "contrast",
    "cam",
    "gradcam",
    "centre_bias",
    "random_similarity",
    "random_cam",
    "random_gradcam",
)
REPEATS = 3


def throughput(model, processor, images: list[bytes], batch_size: int, upscale: int = 1) -> dict[str, float]:
    """Images per second of the zero-shot forward and of `explain` with each method, on the same images: the
    median of `REPEATS` interleaved rounds after a warm-up round."""
    task = next(iter(model.zero_shot_tasks), None)
    kwargs = {"task": task} if task else {"class_names": ["glaucoma", "a normal fundus"]}
    runs = {"zero_shot": lambda: model.zero_shot(images, processor, batch_size=batch_size, **kwargs)}
    options = {"upscale": upscale} if upscale != 1 else {}
    for method in ("similarity", "cam", "gradcam"):
        runs[method] = lambda method=method: model.explain(
            images, processor, method=method, batch_size=batch_size, **kwargs, **options
        )
    seconds = {name: [] for name in runs}
    for round_ in range(REPEATS + 1):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if round_:
                seconds[name].append(time.perf_counter() - start)
    return {name: len(images) / statistics.median(times) for name, times in seconds.items()}


def _cell(summary: dict | None, key: str) -> str:
    value = (summary or {}).get(key)
    return "-" if value is None else f"{value:.2f}"


def markdown_table(rows: dict[str, dict], key: str, first: str, extra: dict[str, str] | None = None) -> str:
    header = [first, "images", *(extra or {}), *COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, kinds in sorted(rows.items()):
        values = [name, str(kinds[MAP_KINDS[0]]["images"]), *(fn(kinds) for fn in (extra or {}).values())]
        lines.append("| " + " | ".join(values + [_cell(kinds.get(kind), key) for kind in COLUMNS]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/visionclip/model", help="saved folder, checkpoint or preset")
    parser.add_argument("--images", type=int, default=600, help="held-out generated images to draw from")
    parser.add_argument(
        "--first-image", type=int, default=0, help="index of the first one (another sample of the held-out stream)"
    )
    parser.add_argument("--image-size", type=int, default=224, help="generated size (the embedded dataset's)")
    parser.add_argument("--tolerance", type=float, default=0.03, help="pointing-game tolerance, share of the side")
    parser.add_argument("--min-images", type=int, default=10, help="findings with fewer images are not tabled")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--speed-images", type=int, default=64, help="images for the throughput runs (0: none)")
    parser.add_argument("--mixed-precision", choices=PRECISIONS, default="auto")
    parser.add_argument(
        "--no-random-baseline", action="store_true", help="leave out the random model's maps (a third of the work)"
    )
    parser.add_argument(
        "--upscale", type=int, default=1, help="maps from the processed image enlarged this many times (explain's)"
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    if args.images < 1 or args.first_image < 0:
        parser.error("--images must be at least 1 and --first-image at least 0")

    torch.manual_seed(0)
    model, processor = load_explainable(args.model, options=["upscale"] if args.upscale != 1 else [])
    baseline = None if args.no_random_baseline else random_baseline(model, seed=0)
    device = next(model.parameters()).device
    precision = resolve_precision(args.mixed_precision, device)
    print(precision.summary())
    tolerance = round(args.tolerance * args.image_size)
    print(
        f"model {args.model}; {args.images} held-out generated images (from index {args.first_image}) at "
        f"{args.image_size} px; "
        f"pointing tolerance {tolerance} px; maps from the image enlarged {args.upscale}x"
    )
    cases = list(generated_cases(args.images, args.image_size, first=args.first_image))
    # the project's random baseline: batch-norm statistics re-estimated on these images (no labels used)
    items = [EvalItem(str(index), case.image, 0) for index, case in enumerate(cases)]
    if baseline is not None:
        estimate_batch_norm_statistics(baseline, processor.image_processor, items, args.batch_size)
    with inference_autocast(precision.mixed_precision, device):
        per_finding, per_lesion = measure(
            model, baseline, processor, cases, finding_questions(), tolerance, args.batch_size, args.upscale
        )
        speed = (
            throughput(
                model, processor, [case.image for case in cases[: args.speed_images]], args.batch_size, args.upscale
            )
            if args.speed_images
            else {}
        )
    per_finding = {k: v for k, v in per_finding.items() if v[MAP_KINDS[0]]["images"] >= args.min_images}
    per_lesion = {k: v for k, v in per_lesion.items() if v[MAP_KINDS[0]]["images"] >= args.min_images}
    local = {k: v for k, v in per_finding.items() if v["area"] < LOCAL_SHARE}
    area = {"mask share of field": lambda kinds: f"{kinds['area']:.3f}"}
    for title, key in (("Pointing-game accuracy", "pointing"), ("Pixel AUROC", "pixel_auroc")):
        print(f"\n{title} per finding (mask: everything drawn for it)\n")
        print(markdown_table(per_finding, key, "finding", area))
        print(f"\n{title} per kind of lesion (the finding's prompts; mask: that lesion only)\n")
        print(markdown_table(per_lesion, key, "lesion"))
    flat = {kind for rows in per_finding.values() for kind in COLUMNS if rows.get(kind, {}).get("flat_maps")}
    if flat:
        print(
            f"\nflat maps (one value over the field: they point nowhere, scored as misses): {', '.join(sorted(flat))}"
        )
    print(f"\nlocal findings (mask < {LOCAL_SHARE:.0%} of the field): {len(local)}")
    for kind in ("similarity", "contrast", "cam", "gradcam"):
        beaten = sorted(k for k, v in local.items() if v[kind]["pointing"] > v["centre_bias"]["pointing"])
        print(f"{kind} points better than centre bias on {len(beaten)}: {', '.join(beaten) or 'none'}")
    if speed:
        print(
            "\nimages/s (this machine, this run):",
            ", ".join(f"{name} {value:.1f}" for name, value in speed.items()),
            f"-> similarity / zero-shot {speed['similarity'] / speed['zero_shot']:.2f}x",
        )
    if args.json:
        report = {
            "model": str(args.model),
            "images": args.images,
            "image_size": args.image_size,
            "tolerance_px": tolerance,
            "upscale": args.upscale,
            "precision": precision.mixed_precision,
            "per_finding": per_finding,
            "per_lesion": per_lesion,
            "images_per_second": speed,
        }
        atomic_write_bytes(args.json, json.dumps(report, indent=2).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
