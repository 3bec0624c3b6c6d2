"""Generator throughput and memory.

1. images/s in one process at 512x512 for the default mix, including PNG encoding (after the per-process vessel
   tree pool is built, and separately the cold start that builds it);
2. images/s end to end with ``generate_fundus.py --workers 2`` writing parquet;
3. peak resident memory (ru_maxrss) of ``generate_fundus.py`` writing 1,000 and 10,000 images to parquet in one
   process: it must not grow with the number of images (shards are streamed).

    python bench/bench_generator.py                       # everything (about 10 minutes on 2 cores)
    python bench/bench_generator.py --rss-large 3000      # quicker memory check
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from visionclip.synthetic import FundusGenerator
from visionclip.synthetic.vessels import TREE_POOL_SIZE, grow_tree

ROOT = Path(__file__).resolve().parents[1]


def single_process(size: int, count: int) -> tuple[float, float, float]:
    """(cold-start seconds to build the tree pool, images/s warm, images/s for `sample_plan` labels only)."""
    started = time.perf_counter()
    for variant in range(TREE_POOL_SIZE):
        grow_tree(variant)
    pool_seconds = time.perf_counter() - started
    generator = FundusGenerator(size, seed=123)
    for index in range(5):
        generator.sample(index)
    started = time.perf_counter()
    for index in range(count):
        generator.sample(1000 + index)
    rate = count / (time.perf_counter() - started)
    started = time.perf_counter()
    for index in range(20000):
        generator.sample_plan(index)
    return pool_seconds, rate, 20000 / (time.perf_counter() - started)


def run_cli(out: Path, count: int, size: int, workers: int) -> tuple[float, float]:
    """Run generate_fundus.py; return (wall seconds, peak RSS in MiB of the main process)."""
    command = [
        sys.executable,
        str(ROOT / "generate_fundus.py"),
        "--out",
        str(out),
        "--num-images",
        str(count),
        "--image-size",
        str(size),
        "--workers",
        str(workers),
        "--quiet",
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(process.stderr.read().decode())
    return elapsed, usage.ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--single", type=int, default=300, help="images for the single-process rate")
    parser.add_argument("--parallel", type=int, default=2000, help="images for the 2-worker run")
    parser.add_argument("--rss-small", type=int, default=1000)
    parser.add_argument("--rss-large", type=int, default=10000)
    parser.add_argument("--skip", nargs="*", default=(), choices=("single", "parallel", "rss"))
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores; image size {args.size}")
    if "single" not in args.skip:
        pool_seconds, rate, label_rate = single_process(args.size, args.single)
        print(f"vessel tree pool ({TREE_POOL_SIZE} trees, once per process): {pool_seconds:.1f} s")
        print(f"single process, warm: {rate:.1f} images/s ({1000 / rate:.1f} ms/image incl. PNG encoding)")
        print(f"labels only (sample_plan): {label_rate:.0f} plans/s")
    with tempfile.TemporaryDirectory() as scratch:
        if "parallel" not in args.skip:
            for workers in (1, 2):
                seconds, _ = run_cli(Path(scratch) / f"w{workers}", args.parallel, args.size, workers)
                print(
                    f"generate_fundus.py --workers {workers}, {args.parallel} images to parquet (cold start): "
                    f"{args.parallel / seconds:.1f} images/s ({seconds:.0f} s)"
                )
        if "rss" not in args.skip:
            for count in (args.rss_small, args.rss_large):
                seconds, rss = run_cli(Path(scratch) / f"rss{count}", count, args.size, 1)
                print(f"peak RSS writing {count} images (1 process): {rss:.0f} MiB ({count / seconds:.1f} images/s)")


if __name__ == "__main__":
    main()
