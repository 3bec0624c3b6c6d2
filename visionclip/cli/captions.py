"""Print the training captions of a dataset's first records (`python -m visionclip.captions DATA`)."""

from __future__ import annotations

import argparse

from ..captions import Captioner
from ..streaming import open_parquet_stream, resolve_data_files


def main(argv: list[str] | None = None) -> int:
    """Print captions for the first records of a dataset folder, parquet glob or Hub id."""
    parser = argparse.ArgumentParser(
        prog="python -m visionclip.captions", description="Show training captions for dataset records."
    )
    parser.add_argument("data", help="dataset folder, parquet glob or Hub dataset id")
    parser.add_argument("--split", default="train")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--epoch", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    captioner = Captioner(seed=args.seed)
    files = resolve_data_files(args.data, args.split)
    for row in open_parquet_stream(files, args.split).remove_columns("image").take(args.count):
        print(f"{row['file_name']}: {captioner(row, args.epoch)}")
    return 0
