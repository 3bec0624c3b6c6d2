"""Images per second of the fundus image processor vs transformers' CLIPImageProcessor (PIL backend).

Both run in this process on the same real 512 px photographs (../shared/data/fundus-real), at the same output
size, once on decoded PIL images (processing only) and once on file paths (decoding included).

    python bench/bench_image_processor.py [--sizes 224 512] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from PIL import Image
from transformers.image_utils import load_image
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from image_processing_visionclip import VisionCLIPImageProcessor
from visionclip.paths import real_data_dir


def images_per_second(process, inputs: list, rounds: int) -> float:
    process(inputs[:4])  # warm-up
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(0, len(inputs), 16):
            process(inputs[i : i + 16])
        rates.append(len(inputs) / (time.perf_counter() - start))
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="folder with */images/*.jpg photographs")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    args.data = args.data or real_data_dir()
    paths = sorted(str(p) for p in args.data.glob("*/images/*.jpg"))
    if not paths:
        parser.error(f"no photographs under {args.data}/*/images/")
    decoded = [Image.open(p).convert("RGB") for p in paths]

    print(
        f"{len(paths)} real photographs, long side {max(max(im.size) for im in decoded)} px; median of "
        f"{args.rounds} rounds, batches of 16, one process"
    )
    print("| output | input | CLIPImageProcessor (PIL) img/s | VisionCLIPImageProcessor img/s | ratio |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        clip = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        ours = VisionCLIPImageProcessor(size={"height": size, "width": size})
        runs = {
            "decoded PIL": (
                lambda batch, p=clip: p(batch, return_tensors="pt"),
                lambda batch, p=ours: p(batch, return_tensors="pt"),
                decoded,
            ),
            "file path": (
                lambda batch, p=clip: p([load_image(x) for x in batch], return_tensors="pt"),
                lambda batch, p=ours: p(batch, return_tensors="pt"),
                paths,
            ),
        }
        for label, (run_clip, run_ours, inputs) in runs.items():
            clip_rate = images_per_second(run_clip, inputs, args.rounds)
            our_rate = images_per_second(run_ours, inputs, args.rounds)
            print(f"| {size} px | {label} | {clip_rate:.0f} | {our_rate:.0f} | {our_rate / clip_rate:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
