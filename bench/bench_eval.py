"""Zero-shot evaluation throughput vs a bare `model.encode_image` loop on the same images, in the same run.

The evaluation path reads the real photographs from disk, decodes and preprocesses them in DataLoader workers and
encodes them; the bare loop only encodes pixel tensors prepared beforehand. A ratio near 1 means preprocessing
and I/O are hidden behind the model.

    python bench/bench_eval.py [--model FOLDER | --preset small] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from visionclip.factory import build_model, load_model
from visionclip.paths import real_data_dir
from visionclip.zeroshot.data import EvalItem
from visionclip.zeroshot.engine import embed_images


def timed(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="saved model folder (default: an untrained --preset model; speed only)")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.model:
        model, processor = load_model(args.model)
    else:
        model, processor = build_model(args.preset)
    model.eval()
    paths = sorted(real_data_dir().glob("*/images/*.jpg"))
    items = [EvalItem(p.name, p, 0) for p in paths]
    pixels = processor.image_processor(paths, return_tensors="pt")["pixel_values"]

    @torch.no_grad()
    def bare_loop() -> None:
        for batch in pixels.split(args.batch_size):
            model.encode_image(batch)

    bare = len(paths) / timed(bare_loop, args.repeats)
    print(
        f"{len(paths)} real photographs, {args.model or args.preset}, batch {args.batch_size}, "
        f"input {pixels.shape[-1]} px, {torch.get_num_threads()} torch threads"
    )
    print("| path | images/s | vs bare encode_image loop |")
    print("|---|---|---|")
    print(f"| bare `encode_image` on prepared tensors | {bare:.1f} | 1.00x |")
    for workers in (0, 1, 2):
        rate = len(paths) / timed(
            lambda w=workers: embed_images(model, processor.image_processor, items, args.batch_size, w), args.repeats
        )
        print(f"| evaluation from files, {workers} worker(s) | {rate:.1f} | {rate / bare:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
