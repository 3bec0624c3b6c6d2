"""Zero-shot on this CPU: ONNX Runtime fp32 and int8 against eager PyTorch, same images, same run.

For each backend: latency of zero-shot at batch 1 (median and 90th percentile over the images, one at a time) and
throughput at a larger batch (images per second), from the same pixel values (the real photographs, preprocessed
once; the preprocessing time is printed apart, as it is the same for every backend) and the same class embeddings
(the task's prompt ensembles, computed once per backend). The issue's target: ONNX fp32 at least 1.3x eager at
batch 1. Torch and ONNX Runtime get the same number of threads.

    python bench/bench_onnx.py                                      # the main job's model, exported with int8
    python bench/bench_onnx.py --model small --images 4 --batch 4 --repeats 2   # a quick end-to-end run
    python bench/bench_onnx.py --model runs/visionclip/model --export runs/visionclip/onnx   # an existing export
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from visionclip.factory import build_model, load_model, source_kind  # noqa: E402
from visionclip.onnx.accuracy import backends  # noqa: E402
from visionclip.onnx.export import export_onnx  # noqa: E402
from visionclip.paths import real_data_dir  # noqa: E402
from visionclip.precision import _cpu_name  # noqa: E402

EAGER = "eager PyTorch fp32"


def model_folder(source: str, scratch: Path) -> Path:
    """A saved folder as given, or a preset's model (random weights) saved into `scratch`."""
    if source_kind(source) == "folder":
        return Path(source)
    model, processor = build_model(source)
    folder = scratch / "model"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def timed(function, repeats: int) -> list[float]:
    function()  # warm-up: first-call allocations and kernel selection
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def timed_one_by_one(score, pixels: np.ndarray, repeats: int) -> list[float]:
    """Seconds of each single-image call, over `repeats` passes through the images (after one warm-up call)."""
    score(pixels[:1])
    times = []
    for _ in range(repeats):
        for index in range(len(pixels)):
            started = time.perf_counter()
            score(pixels[index : index + 1])
            times.append(time.perf_counter() - started)
    return times


def scorers(folder: Path, export: Path, task: str, threads: int) -> dict:
    """Backend name -> `pixel_values (N, 3, H, W) -> probabilities (N, C)`, each with its class embeddings ready."""
    model, processor = load_model(folder)
    prompts = model.class_prompts(task=task)
    classifier = model.zero_shot_classifier(prompts, processor.tokenizer)
    scale = model.logit_scale_value().detach()

    def eager(pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return (scale * model.encode_image(torch.from_numpy(pixels)) @ classifier.t()).softmax(-1).numpy()

    found = {EAGER: eager}
    for name, runtime in backends(export, threads).items():
        runtime.classifier(prompts)  # computed once, as eager's
        found[f"ONNX Runtime {name.removeprefix('onnx ')}"] = lambda pixels, runtime=runtime: (
            runtime.scores(runtime.encode_pixels(pixels), prompts).probs
        )
    return found, processor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/visionclip/model", help="saved model folder or preset name")
    parser.add_argument("--export", type=Path, help="an existing export (default: export now, with int8, to a temp)")
    parser.add_argument("--task", default="diagnosis", help="the zero-shot task to score (default: diagnosis)")
    parser.add_argument("--images", type=int, default=16, help="real photographs to use (default: 16)")
    parser.add_argument("--batch", type=int, default=16, help="batch size for throughput (default: 16)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over the images (default: 5)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both (default: all)")
    args = parser.parse_args(argv)
    for option in ("images", "batch", "repeats", "threads"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be at least 1")
    torch.set_num_threads(args.threads)
    photos = sorted((real_data_dir() / "hrf" / "images").glob("*.jpg"))
    photos += sorted((real_data_dir() / "csdi" / "images").glob("*.jpg"))
    photos = photos[: args.images]
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as scratch:
        folder = model_folder(args.model, Path(scratch))
        export = args.export or export_onnx(folder, Path(scratch) / "onnx", quantize=True)
        backend_scorers, processor = scorers(folder, export, args.task, args.threads)
        started = time.perf_counter()
        pixels = processor.image_processor(photos, return_tensors="np")["pixel_values"]
        preprocessing = (time.perf_counter() - started) / len(photos)
        print(
            f"CPU: {_cpu_name()}, {args.threads} thread(s); torch {torch.__version__}, onnxruntime "
            f"{onnxruntime.__version__}"
        )
        print(
            f"model: {args.model}; task {args.task}; {len(photos)} real photographs, {pixels.shape[2]} px; "
            f"preprocessing (same for all): {1000 * preprocessing:.1f} ms per image"
        )
        print(f"| backend | batch 1 median ms | batch 1 p90 ms | batch {args.batch} images/s | speed-up at batch 1 |")
        print("|---|---|---|---|---|")
        eager_median = None
        for name, score in backend_scorers.items():
            singles = timed_one_by_one(score, pixels, args.repeats)
            batches = [pixels[i : i + args.batch] for i in range(0, len(pixels), args.batch)]
            seconds = min(timed(lambda score=score, batches=batches: [score(b) for b in batches], args.repeats))
            median = statistics.median(singles)
            eager_median = eager_median or median
            p90 = float(np.percentile(singles, 90))
            print(
                f"| {name} | {1000 * median:.1f} | {1000 * p90:.1f} | {len(pixels) / seconds:.1f} | "
                f"{eager_median / median:.2f}x |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
