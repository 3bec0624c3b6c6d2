"""Generate synthetic colour fundus photographs with SynFundus-style labels.

Examples:
    # 2,000 training images as a sharded parquet `datasets` folder
    python generate_fundus.py --out outputs/synfundus-mini --num-images 2000

    # train + held-out validation split, 2 worker processes, a contact sheet of the first 24 training images
    python generate_fundus.py --out outputs/synth --splits train=20000,validation=2000 --workers 2 \\
        --contact-sheet outputs/synth/sheet.png

    # a SynFundus-like release folder (PNG files + metadata.csv), e.g. to test the converter
    python generate_fundus.py --out outputs/release --num-images 200 --format release

    # more glaucoma and proliferative DR than the default screening mix
    python generate_fundus.py --out outputs/gc --num-images 500 --prevalence is_gc=0.3,dr_grade_4=0.1

Re-running the same command after an interruption finishes only the missing shards.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from ..shards import ShardSpec
from ..synthetic import FundusGenerator, resolve_prevalence
from ..synthetic.generator import MAX_SIZE, MIN_SIZE
from ..synthetic.labels import PREVALENCE_HELP
from ..synthetic.writer import (
    IMAGE_FORMATS,
    SampleMaker,
    contact_sheet,
    parse_splits,
    write_parquet_dataset,
    write_release,
)


def parse_prevalence(text: str) -> dict[str, float]:
    """``is_gc=0.1,dr_grade_4=0.05`` -> {"is_gc": 0.1, "dr_grade_4": 0.05} (validated against the known keys)."""
    overrides: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"bad prevalence {part!r}: expected key=value")
        overrides[key.strip()] = value.strip()
    resolve_prevalence(overrides)
    return {key: float(value) for key, value in overrides.items()}


def build_parser() -> argparse.ArgumentParser:
    """The command-line options (see the module docstring for examples)."""
    keys = "; ".join(f"{key}: {text}" for key, text in PREVALENCE_HELP.items())
    parser = argparse.ArgumentParser(
        description="Generate synthetic fundus photographs with SynFundus-1M-style labels.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples:", 1)[1],
    )
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--num-images", type=int, help="number of images in a single split (see --split-name)")
    size.add_argument("--splits", help="several splits, e.g. train=20000,validation=2000")
    parser.add_argument("--split-name", default="train", help="split name used with --num-images (default: train)")
    parser.add_argument("--format", choices=("parquet", "release"), default="parquet", help="output layout")
    parser.add_argument("--image-size", type=int, default=512, help=f"pixels, {MIN_SIZE}-{MAX_SIZE} (default 512)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument(
        "--prevalence", default="", help=f"comma-separated key=value overrides ({keys}; and every finding column)"
    )
    parser.add_argument("--rows-per-shard", type=int, default=1000, help="images per parquet shard (default 1000)")
    parser.add_argument("--workers", type=int, default=1, help="generator processes (default 1)")
    parser.add_argument("--png-compress-level", type=int, default=1, help="zlib level 0-9 (default 1: fast)")
    parser.add_argument(
        "--image-format",
        choices=sorted(IMAGE_FORMATS),
        default="png",
        help="png (lossless, like SynFundus-1M; default) or jpeg (6x faster to decode in training)",
    )
    parser.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality 1-100 (default 95)")
    parser.add_argument("--contact-sheet", help="also save a PNG grid of the first images with their labels")
    parser.add_argument("--contact-sheet-count", type=int, default=24, help="images on the contact sheet")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _check_writable(folder: Path) -> str | None:
    """Why ``folder`` cannot be used as an output folder, or None."""
    if folder.exists() and not folder.is_dir():
        return f"--out {folder} exists and is not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        return f"--out {folder} is not writable: {error.strerror or error}"
    return None


def resolve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict:
    """Validate the arguments and return the resolved configuration (errors exit with status 2)."""
    try:
        if args.splits is not None:
            splits = parse_splits(args.splits)
        else:
            count = 1000 if args.num_images is None else args.num_images
            if count <= 0:
                raise ValueError(f"--num-images must be positive, got {count}")
            splits = parse_splits(f"{args.split_name}={count}")
        prevalence = parse_prevalence(args.prevalence)
    except ValueError as error:
        parser.error(str(error))
    if not MIN_SIZE <= args.image_size <= MAX_SIZE:
        parser.error(f"--image-size must be between {MIN_SIZE} and {MAX_SIZE}, got {args.image_size}")
    if args.seed < 0:
        parser.error(f"--seed must be non-negative, got {args.seed}")
    if args.workers < 1 or args.workers > (os.cpu_count() or 1) * 4:
        parser.error(f"--workers must be between 1 and {(os.cpu_count() or 1) * 4}, got {args.workers}")
    if args.rows_per_shard <= 0:
        parser.error(f"--rows-per-shard must be positive, got {args.rows_per_shard}")
    if not 0 <= args.png_compress_level <= 9:
        parser.error(f"--png-compress-level must be 0-9, got {args.png_compress_level}")
    if not 1 <= args.jpeg_quality <= 100:
        parser.error(f"--jpeg-quality must be 1-100, got {args.jpeg_quality}")
    if args.contact_sheet_count <= 0:
        parser.error(f"--contact-sheet-count must be positive, got {args.contact_sheet_count}")
    if args.format == "release" and len(splits) > 1:
        parser.error("--format release writes one folder with one CSV: use --num-images, not several --splits")
    problem = _check_writable(Path(args.out))
    if problem:
        parser.error(problem)
    return {
        "out": str(Path(args.out).resolve()),
        "format": args.format,
        "splits": splits,
        "image_size": args.image_size,
        "seed": args.seed,
        "prevalence": resolve_prevalence(prevalence),
        "prevalence_overrides": prevalence,
        "rows_per_shard": args.rows_per_shard,
        "workers": args.workers,
        "png_compress_level": args.png_compress_level,
        "image_format": args.image_format,
        "jpeg_quality": args.jpeg_quality,
        "contact_sheet": args.contact_sheet,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    config = resolve(args, parser)
    print("generate_fundus configuration:")
    print(json.dumps({k: v for k, v in config.items() if k != "prevalence"}, indent=2, ensure_ascii=False))
    print("prevalence (resolved): " + ", ".join(f"{k}={v:g}" for k, v in config["prevalence"].items()))
    maker = SampleMaker(
        config["image_size"],
        config["seed"],
        tuple(sorted(config["prevalence"].items())),
        config["png_compress_level"],
        config["image_format"],
        config["jpeg_quality"],
    )
    total = sum(config["splits"].values())
    progress = None
    if not args.quiet:
        progress = tqdm(total=total, unit="img", desc="generating", smoothing=0.05)
    started = time.perf_counter()
    on_row = progress.update if progress is not None else None
    try:
        if config["format"] == "parquet":

            def on_skip(spec: ShardSpec) -> None:
                if progress is not None:
                    progress.total -= spec.num_rows
                    progress.refresh()

            report = write_parquet_dataset(
                config["out"],
                config["splits"],
                maker,
                rows_per_shard=config["rows_per_shard"],
                workers=config["workers"],
                on_row=on_row,
                on_skip=on_skip,
            )
            summary = f"{len(report.written)} shard(s) written, {len(report.skipped)} already complete"
        else:
            csv_path = write_release(config["out"], total, maker, workers=config["workers"], on_row=on_row)
            summary = f"{total} images and {csv_path.name} written"
    except ValueError as error:
        if progress is not None:
            progress.close()
        print(f"error: {error}", file=sys.stderr)
        return 1
    if progress is not None:
        progress.close()
    elapsed = time.perf_counter() - started
    print(f"{summary} in {config['out']} ({elapsed:.1f} s)")
    if config["contact_sheet"]:
        split = next(iter(config["splits"]))
        count = min(args.contact_sheet_count, config["splits"][split])
        generator: FundusGenerator = maker.generator(split if config["format"] == "parquet" else "train")
        sheet = contact_sheet([generator.sample(i) for i in range(count)], columns=6, thumb=256)
        Path(config["contact_sheet"]).parent.mkdir(parents=True, exist_ok=True)
        sheet.save(config["contact_sheet"])
        print(f"contact sheet: {config['contact_sheet']}")
    return 0
