"""Data loader throughput and memory vs the `small` preset's training step rate, in the same run.

Stream -> decode (512 px PNG) -> FOV crop/resize (224 px) -> augment -> caption -> tokenize -> batch of 64, with 0,
1 and 2 DataLoader workers; then the images per second one training step of `small` consumes, as the main job runs
it (192 px channels-last batches, `--mixed-precision auto` as train.py: bf16 autocast where the CPU runs it
natively, else fp32); then peak resident memory
(main process + workers) while streaming 1k and 10k images.

    python bench/bench_streaming.py                                   # 512 px PNG, like SynFundus-1M
    python bench/bench_streaming.py --data ~/.cache/visionclip/<embedded set>   # what the demo streams
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import psutil
import torch

from visionclip.augment import FundusAugment
from visionclip.factory import build_model
from visionclip.precision import PRECISIONS, resolve_precision
from visionclip.streaming import build_stream, make_dataloader

BATCH = 64


def ensure_data(folder: Path, images: int) -> Path:
    from visionclip.synthetic.labels import resolve_prevalence
    from visionclip.synthetic.writer import SampleMaker, write_parquet_dataset

    maker = SampleMaker(512, 123, tuple(sorted(resolve_prevalence().items())))
    write_parquet_dataset(folder, {"train": images}, maker, rows_per_shard=250, workers=2)
    return folder


class PeakMemory:
    """Samples the resident memory of this process and its children every 50 ms."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                total = me.memory_info().rss + sum(c.memory_info().rss for c in me.children(recursive=True))
            except psutil.NoSuchProcess:
                continue
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def loader_rate(data: Path, processor, workers: int, images: int) -> float:
    stream = build_stream(
        str(data),
        processor.image_processor,
        processor.tokenizer,
        BATCH,
        shuffle_buffer=256,
        augment=FundusAugment(),
        num_workers=workers,
        epochs=None,
    )
    seen, start = 0, None
    for batch in make_dataloader(stream):
        if start is None:  # the first batch pays for process start-up and the shuffle buffer fill
            start = time.perf_counter()
            continue
        seen += len(batch["captions"])
        if seen >= images:
            break
    return seen / (time.perf_counter() - start)


def training_rate(bf16: bool, steps: int = 8) -> float:
    model, processor = build_model("small")
    model.train().to(memory_format=torch.channels_last)  # weights in the inputs' layout, as the trainer has them
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    size = processor.image_processor.size["height"]
    pixels = torch.randn(BATCH, 3, size, size).contiguous(memory_format=torch.channels_last)
    tokens = processor.tokenizer(
        [
            "A colour fundus photograph of the left eye showing moderate diabetic "
            "retinopathy with retinal haemorrhages and hard exudates."
        ]
        * BATCH,
        padding=True,
        return_tensors="pt",
    )

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**tokens, pixel_values=pixels, return_loss=True).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(3):  # oneDNN builds its kernels in the first steps
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * BATCH / (time.perf_counter() - start)


def peak_memory(data: Path, processor, images: int) -> float:
    with PeakMemory() as meter:
        loader_rate(data, processor, workers=1, images=images)
    return meter.peak / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="an existing dataset folder (default: 10k generated 512 px images)")
    parser.add_argument("--images", type=int, default=1000, help="images timed per loader configuration")
    parser.add_argument("--mixed-precision", choices=PRECISIONS, default="auto", help="of the training step")
    args = parser.parse_args(argv)
    data = args.data or ensure_data(Path.home() / ".cache" / "visionclip" / "bench-512px-10k", 10_000)
    _, processor = build_model("small")
    size = processor.image_processor.size["height"]
    print(f"data: {data}, batch {BATCH}, small preset preprocessing at {size} px, augmentation on")
    rates = {workers: loader_rate(data, processor, workers, args.images) for workers in (0, 1, 2)}
    precision = resolve_precision(args.mixed_precision, "cpu")
    print(precision.summary())
    train = training_rate(precision.mixed_precision == "bf16")
    print("| configuration | images/s | vs training step |")
    print("|---|---|---|")
    for workers, rate in rates.items():
        print(f"| loader, {workers} worker(s) | {rate:.0f} | {rate / train:.1f}x |")
    label = "fp32" if precision.mixed_precision == "no" else precision.mixed_precision
    print(f"| training step, small preset, {label}, batch {BATCH} | {train:.0f} | 1.0x |")
    if args.data is None:
        small, large = peak_memory(data, processor, 1000), peak_memory(data, processor, 10000 - 2 * BATCH)
        print(f"peak RSS (main + workers) streaming 1k images: {small:.0f} MiB; 10k images: {large:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
