"""Label-efficiency study: linear-probe macro AUROC against labelled images per class, for each starting point.

    python bench/label_efficiency.py                       # the real HRF, CSDI and MFIDDR sets, all four starting points
    python bench/label_efficiency.py --dataset my_task.yaml:/data/labels.csv --starting-points visionclip towers

Starting points: (a) `visionclip`, the main-job model (--model); (b) `towers`, the same towers before synthetic
training, the preset as it ships (--towers); (c) `random`, the main-job architecture freshly initialised, its
batch-norm statistics re-estimated on each set's images (as eval_zeroshot.py's random baseline); (d) `supervised`,
the supervised-pretraining baseline of `train.py --objective supervised` (--supervised-model). Sets are given as in
eval_zeroshot.py (`TASK:SOURCE`, the same columns; the patient column groups images). For each set and starting
point the images are embedded once (kept in --output-dir/embeddings, so a rerun resumes), then for each k of
--shots, --draws random draws train a logistic-regression probe (see visionclip/finetune/study.py for the
protocol). Writes results.md, results.csv, results.json and learning_curves.png to --output-dir.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..finetune import study
from ..finetune.study import ALL
from ..finetune.study_report import write_outputs
from ..finetune.study_run import (
    STARTING_POINTS,
    StaleEmbeddingsError,
    StartingPoint,
    embeddings_of,
    run_curves,
)
from ..locking import FolderInUseError, folder_lock
from .eval import DEFAULT_MODEL, default_datasets, load_datasets
from .eval import parse_args as eval_arguments

DEFAULT_SHOTS = ("1", "4", "16", ALL)


def shots_value(text: str) -> int | str:
    if text == ALL:
        return ALL
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of images per class or {ALL!r}, got {text!r}")
    return int(text)


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="(a) the main-job model (folder, Hub id, checkpoint)")
    parser.add_argument(
        "--towers", default="small-pretrained", help="(b) preset whose towers the main job started from"
    )
    parser.add_argument(
        "--supervised-model", default="runs/supervised/model", help="(d) the train.py --objective supervised model"
    )
    parser.add_argument("--starting-points", nargs="+", choices=list(STARTING_POINTS), default=list(STARTING_POINTS))
    parser.add_argument(
        "--dataset",
        action="append",
        metavar="TASK:SOURCE",
        help="as in eval_zeroshot.py (repeatable; default: the real HRF, CSDI and MFIDDR sets)",
    )
    parser.add_argument("--shots", nargs="+", type=shots_value, default=[shots_value(k) for k in DEFAULT_SHOTS])
    parser.add_argument("--draws", type=int, default=30, help="random draws per point (default 30)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds of the `all` point (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cpu-threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/label_efficiency"))
    args = parser.parse_args(argv)
    if args.draws < 1 or args.batch_size < 1 or args.folds < 2 or args.cpu_threads < 0:
        parser.error("--draws and --batch-size must be at least 1, --folds at least 2, --cpu-threads not negative")
    return parser, args


def sources(args: argparse.Namespace) -> list[StartingPoint]:
    where = {
        "visionclip": args.model,
        "towers": args.towers,
        "random": args.model,
        "supervised": args.supervised_model,
    }
    return [StartingPoint(name, where[name]) for name in STARTING_POINTS if name in args.starting_points]


def main(argv: list[str] | None = None) -> int:
    parser, args = parse_args(argv)
    if args.cpu_threads:
        torch.set_num_threads(args.cpu_threads)
    specs = args.dataset or default_datasets()
    try:
        _, columns = eval_arguments([arg for spec in specs for arg in ("--dataset", spec)])  # eval's column defaults
        datasets = load_datasets(specs, columns)
    except (ValueError, FileNotFoundError, OSError) as error:
        parser.error(str(error))
    points = sources(args)
    protocol = {
        "description": study.__doc__.strip(),
        "shots": args.shots,
        "draws": args.draws,
        "folds": args.folds,
        "seed": args.seed,
        "starting_points": {point.label: point.source for point in points},
        "sets": {d.name: d.source for d in datasets},
        "command": "python bench/label_efficiency.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    try:
        with folder_lock(args.output_dir, "label-efficiency study", wait=False):
            embeddings = embeddings_of(args.output_dir, points, datasets, args.seed, args.batch_size)
            rows = run_curves(embeddings, points, datasets, args.shots, args.draws, args.seed, args.folds)
            unreadable = {
                f"{point} / {data}": arrays["unreadable"].tolist()
                for (point, data), arrays in embeddings.items()
                if len(arrays["unreadable"])
            }
            files = write_outputs(args.output_dir, rows, args.shots, protocol, unreadable)
    except (FolderInUseError, StaleEmbeddingsError, ValueError, FileNotFoundError, OSError) as error:
        parser.error(str(error))
    print((args.output_dir / "results.md").read_text())
    print("wrote " + ", ".join(str(f) for f in files))
    return 0
