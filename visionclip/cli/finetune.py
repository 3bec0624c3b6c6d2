"""Adapt a VisionCLIP model to a small labelled set, cross-validated, and save a Hub-ready image classifier.

    python finetune.py --model runs/visionclip/model --dataset hrf:/data/hrf/labels.csv --mode zero-shot-init
    accelerate launch finetune.py --model org/visionclip --dataset glaucoma:/data/folder --mode full --layer-decay 0.8
    python finetune.py --model ./model --dataset my_task.yaml:/data/labels.csv --cv-by group --group-column patient

`--model`: a saved folder, a Hub id, a training checkpoint folder or a preset name. `--dataset TASK:SOURCE` as in
`eval_zeroshot.py` (a CSV `file,label[,split,fold,group]`, a folder per class, or a `datasets` folder / Hub id); the
task's prompts give the zero-shot head. Modes: `linear-probe` (logistic regression on the frozen embeddings),
`zero-shot-init` (the zero-shot head, trained on the frozen embeddings), `full` (tower and head: warm-up + cosine,
`--layer-decay`). `--wise-alpha` < 1 interpolates the trained weights towards the zero-shot ones (WiSE-FT).
Each fold is scored by a classifier trained on the others (`--cv-by fold|group|stratified`); the classifier
trained on every image is saved to --output-dir with a model card of the cross-validated results.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from accelerate.state import AcceleratorState

from ..factory import load_model
from ..finetune.data import assign_folds, read_images
from ..finetune.export import export_classifier, results_entry
from ..finetune.fit import MODES, FitOptions
from ..finetune.model import zero_shot_classifier
from ..finetune.run import run_finetune
from ..precision import PRECISIONS, resolve_precision
from ..zeroshot.data import load_eval_dataset
from ..zeroshot.report import markdown_table
from ..zeroshot.runner import text_side_trained
from ..zeroshot.tasks import load_task


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--model", required=True, help="saved folder, Hub id, training checkpoint or preset name")
    add("--dataset", required=True, metavar="TASK:SOURCE", help="task and labelled images (see eval_zeroshot.py)")
    add("--mode", choices=MODES, default="zero-shot-init")
    add("--output-dir", type=Path, required=True, help="the classifier folder to write (replaced atomically)")
    add("--cv-by", choices=("fold", "group", "stratified"), help="default: fold column, else group, else stratified")
    add("--folds", type=int, default=5, help="folds generated for --cv-by group or stratified")
    for role, default in (("file", "file"), ("label", "label"), ("split", "split"), ("fold", "fold")):
        add(f"--{role}-column", default=default)
    add("--group-column", default="patient", help="the patient (or eye) of each image")
    add("--image-column", default="image")
    add("--hf-split", default="train", help="split of a `datasets` source")
    add("--epochs", type=int, default=30)
    add("--batch-size", type=int, default=16)
    add("--lr", type=float, default=1e-4, help="image tower and projection (full mode)")
    add("--head-lr", type=float, default=1e-2)
    add("--weight-decay", type=float, default=0.05)
    add("--warmup-ratio", type=float, default=0.1)
    add("--layer-decay", type=float, default=1.0, help="LR factor per tower block below the top (full mode)")
    add("--patience", type=int, default=5, help="epochs without a better validation loss before stopping")
    add("--val-fraction", type=float, default=0.2, help="inner validation split for early stopping (0: none)")
    add("--no-class-weighting", action="store_true", help="do not weight the loss by inverse class frequency")
    add("--probe-c", type=float, default=1.0, help="inverse L2 strength of the linear probe")
    add("--wise-alpha", type=float, default=1.0, help="WiSE-FT: 0 = zero-shot weights, 1 = fine-tuned (default)")
    add("--mixed-precision", choices=PRECISIONS, default="auto")
    add("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    add("--seed", type=int, default=0)
    add("--data-description", help="one paragraph on the training images, for the model card")
    add("--data-license", help="licence of the training images, for the model card")
    add("--license", default="other", help="the classifier's licence id in the model card")
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "folds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0.0 <= args.wise_alpha <= 1.0:
        parser.error(f"--wise-alpha must be between 0 and 1, got {args.wise_alpha}")
    if not 0.0 <= args.val_fraction < 1.0:
        parser.error("--val-fraction must be in [0, 1)")
    return parser, args


def short_name(model: str) -> str:
    """A model's name for tables and plot titles: a folder's last two parts (`visionclip/model`)."""
    return "/".join(Path(model).resolve().parts[-2:]) if Path(model).exists() else model


def start_accelerator(requested: str):
    """The Accelerator in the precision `visionclip.precision` picks for this device (as train.py does)."""
    from accelerate import Accelerator, PartialState

    cpu = not torch.accelerator.is_available()
    precision = resolve_precision(requested, PartialState(cpu=cpu).device)
    return Accelerator(cpu=cpu, mixed_precision=precision.mixed_precision), precision


def main(argv: list[str] | None = None) -> int:
    parser, args = parse_args(argv)
    accelerator, precision = start_accelerator(args.mixed_precision)
    try:
        return run(parser, args, argv, accelerator, precision)
    finally:
        accelerator.end_training()
        # accelerate keeps one precision per process: forget it, so that main() can run again in this process
        # (tests, notebooks) with another one
        AcceleratorState._reset_state()


def run(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str] | None, accelerator, precision
) -> int:
    """Read, check, cross-validate, train on everything, export (the main process writes)."""
    say = accelerator.print
    say(precision.summary())
    columns = {role: getattr(args, f"{role}_column") for role in ("file", "label", "split", "fold", "group", "image")}
    try:
        task_name, sep, source = args.dataset.partition(":")
        if not sep or not source:
            raise ValueError(f"--dataset {args.dataset!r}: expected TASK:SOURCE")
        task = load_task(task_name)
        dataset = load_eval_dataset(source, task, task.name, columns, args.hf_split)
        torch.manual_seed(args.seed)  # a preset's random weights too are the same in every run
        model, processor = load_model(args.model)
        if not text_side_trained(model) and (args.mode == "zero-shot-init" or args.wise_alpha < 1):
            raise ValueError(
                f"--model {args.model} is a supervised-pretraining baseline whose text side is untrained: "
                "--mode zero-shot-init and --wise-alpha < 1 start from or return to its zero-shot head, which means "
                "nothing; use --mode linear-probe, or --mode full with --wise-alpha 1"
            )
        data = read_images(dataset, processor.image_processor)
        cv_by = args.cv_by or (
            "fold" if data.folds is not None else "group" if data.groups is not None else "stratified"
        )
        folds = assign_folds(data, args.folds, args.seed, cv_by)
    except (ValueError, FileNotFoundError, OSError) as error:
        parser.error(str(error))
    for image, error in data.skipped:
        say(f"skipped unreadable row: {image}: {error}", file=sys.stderr)
    if data.skipped:
        say(f"{len(data.skipped)} of {len(dataset.items)} rows skipped (listed in the results)", file=sys.stderr)
    dropped = [label for label in task.labels if label not in data.classes]
    if dropped:
        say(f"classes without images, left out of the classifier: {', '.join(dropped)}", file=sys.stderr)
    torch.manual_seed(args.seed)
    start = zero_shot_classifier(model, processor.tokenizer, task, data.classes)
    options = FitOptions(
        args.mode,
        args.epochs,
        args.batch_size,
        args.lr,
        args.head_lr,
        args.weight_decay,
        args.warmup_ratio,
        args.layer_decay,
        args.patience,
        args.val_fraction,
        not args.no_class_weighting,
        args.probe_c,
        args.wise_alpha,
        args.seed,
        precision.mixed_precision,
    )
    result = run_finetune(
        start,
        processor.image_processor,
        data,
        folds,
        options,
        ordinal=task.ordinal,
        bootstrap=args.bootstrap,
        accelerator=accelerator,
    )
    if not accelerator.is_main_process:
        return 0
    described = {
        "fold": "the dataset's fold column",
        "group": "group-disjoint folds",
        "stratified": "stratified folds",
    }
    entry = results_entry(
        result,
        data,
        {
            "model": f"{short_name(args.model)} + {args.mode}"
            + (f" (WiSE-FT alpha {args.wise_alpha})" if args.wise_alpha < 1 else ""),
            "base_model": args.model,
            "dataset": dataset.name,
            "task": task.name,
            "mode": args.mode,
            "split": "all",
            "source": dataset.source,
            "evaluated_on": f"{len(data)} images, {len(set(folds.tolist()))}-fold cross-validation "
            f"({described[cv_by]}), each fold scored by a classifier trained on the others",
            "command": shlex.join(["python", "finetune.py", *(sys.argv[1:] if argv is None else argv)]),
            "options": asdict(options),
            "data_description": args.data_description,
            "data_license": args.data_license,
            "license": args.license,
        },
    )
    folder = export_classifier(args.output_dir, result, data, processor.image_processor, entry, args.model)
    say(markdown_table([entry, dict(entry, mode="zero-shot (before training)", metrics=result.zero_shot_metrics)]))
    say(f"wrote {folder}")
    return 0
