"""Zero-shot and few-shot evaluation of VisionCLIP on real external datasets.

    python eval_zeroshot.py                                   # trained default model on the real HRF, CSDI and MFIDDR sets
    python eval_zeroshot.py --model org/visionclip --dataset idrid_grading:/data/idrid/labels.csv
    python eval_zeroshot.py --model ./model --dataset refuge:/data/refuge_folder --dataset hrf:synthetic
    python eval_zeroshot.py --model ./model --dataset my_task.yaml:/data/my/labels.csv --compare other/model
    python eval_zeroshot.py --dataset mfiddr:/data/mfiddr/labels.csv --unit-columns patient eye   # one score per eye

`--model` is a saved folder, a Hub id, a training checkpoint folder or a preset name (random weights).
`--dataset TASK:SOURCE`: TASK is a task name (visionclip/data/eval_tasks) or a task YAML file; SOURCE is a CSV of
`file,label[,split,fold]` (paths relative to the CSV), a folder with one subfolder per label, a `datasets` folder
or Hub id, or `synthetic` (held-out images from the generator). A dataset without a split column is evaluated
whole: zero-shot scores every image, few-shot probes train on --shots images per class and score the rest. Each
model is compared with a randomly initialised model of the same architecture (random features: its batch norms'
statistics are estimated on each set's images, not its labels). Where a label covers several images (a DR grade
per eye over four fields), `--unit-columns` names the unit: its images' class probabilities are averaged and each
unit is scored once. Writes results.json, results.md, model_index.json and
PNG plots to --output-dir. `--explain OUT_DIR` also writes heatmap overlays (PNG) of --explain-per-class images of
each class of each set (from the split zero-shot scores), for the class the model predicts and, where it is wrong,
the true class, with the evaluation's prompt ensembles: `OUT_DIR/<task>/<true>__<image>__<class>.png`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm.auto import tqdm

from ..explain import load_explainable, upscale_keywords
from ..explain.examples import ExampleOptions, check_out_dir, write_examples
from ..explain.options import add_overlay_options, overlay_upscale
from ..factory import load_model
from ..paths import real_data_dir
from ..precision import PRECISIONS, inference_autocast, resolve_precision
from ..zeroshot.data import EvalDataset, load_eval_dataset
from ..zeroshot.report import markdown_table, model_index, per_class_table, plot_confusion, plot_roc
from ..zeroshot.runner import MODES, EvalOptions, evaluate_dataset, random_baseline, text_side_trained
from ..zeroshot.tasks import load_task

DEFAULT_MODEL = "runs/visionclip/model"


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help="saved folder, Hub id, training checkpoint or preset name"
    )
    parser.add_argument("--model-name", help="name in the report (default: the folder or id)")
    parser.add_argument(
        "--dataset",
        action="append",
        metavar="TASK:SOURCE",
        help="task and images to evaluate (repeatable; default: the real HRF, CSDI and MFIDDR sets)",
    )
    parser.add_argument("--compare", action="append", default=[], metavar="MODEL", help="other models to report")
    parser.add_argument("--no-random-baseline", action="store_true", help="skip the random-init baseline")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--eval-split", default="test", help="split scored by zero-shot and few-shot (default test)")
    parser.add_argument("--fewshot-split", default="fewshot", help="split that trains few-shot probes")
    parser.add_argument("--shots", type=int, default=5, help="images per class for few-shot without a split column")
    parser.add_argument("--file-column", default="file")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--split-column", default="split")
    parser.add_argument("--fold-column", default="fold")
    parser.add_argument(
        "--group-column",
        default="patient",
        help="the patient (or eye) of each image, where the data has it: images of one patient are not independent, "
        "so confidence intervals resample whole patients (default patient)",
    )
    parser.add_argument(
        "--unit-columns",
        nargs="+",
        default=[],
        metavar="COLUMN",
        help="columns that together name what a label belongs to where it covers several images (e.g. `patient eye` "
        "for a DR grade per eye over four fields): each unit's class probabilities are averaged over its images and "
        "the unit is scored once (default: every image scored; --explain overlays stay per image)",
    )
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--hf-split", default="test", help="split of a `datasets` source (default test)")
    parser.add_argument("--synthetic-count", type=int, default=300, help="images for a `synthetic` source")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers decoding images")
    parser.add_argument(
        "--mixed-precision",
        choices=PRECISIONS,
        default="auto",
        help="image encoding; auto: bf16 where the device runs it",
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% CIs (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path("eval_results"))
    parser.add_argument("--explain", type=Path, metavar="OUT_DIR", help="also write heatmap overlays (PNG) here")
    parser.add_argument("--explain-per-class", type=int, default=2, help="images explained per class and set")
    add_overlay_options(parser)
    args = parser.parse_args(argv)
    args.explain_upscale = overlay_upscale(parser, args)
    for name in ("shots", "batch_size", "synthetic_count", "explain_per_class"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.num_workers < 0 or args.bootstrap < 0:
        parser.error("--num-workers and --bootstrap must not be negative")
    return parser, args


def default_datasets() -> list[str]:
    root = real_data_dir()
    return [f"{name}:{root / name / 'labels.csv'}" for name in ("hrf", "csdi", "mfiddr")]


def load_datasets(specs: list[str], args: argparse.Namespace) -> list[EvalDataset]:
    columns = {
        "file": args.file_column,
        "label": args.label_column,
        "split": args.split_column,
        "fold": args.fold_column,
        "group": args.group_column,
        "image": args.image_column,
        "unit": tuple(args.unit_columns),
    }
    loaded = []
    for spec in specs:
        task_name, sep, source = spec.partition(":")
        if not sep or not source:
            raise ValueError(f"--dataset {spec!r}: expected TASK:SOURCE")
        task = load_task(task_name)
        name = f"{task.name}" if source != "synthetic" else f"{task.name} (synthetic)"
        loaded.append(load_eval_dataset(source, task, name, columns, args.hf_split, args.synthetic_count))
    return loaded


def write_dataset_examples(model, processor, dataset: EvalDataset, args: argparse.Namespace, precision: str) -> None:
    options = ExampleOptions(args.explain_per_class, args.explain_method, args.batch_size, args.explain_upscale)
    device = next(model.parameters()).device
    with inference_autocast(precision, device):
        written = write_examples(model, processor, dataset, args.eval_split, args.explain, options)
    print(f"{dataset.name}: {len(written)} {args.explain_method} overlays written to {args.explain}")


def main(argv: list[str] | None = None) -> int:
    parser, args = parse_args(argv)
    try:
        if args.explain is not None:
            check_out_dir(args.explain)
        datasets = load_datasets(args.dataset or default_datasets(), args)
        if args.explain is not None:
            model, processor = load_explainable(args.model, list(upscale_keywords(args.explain_upscale)))
        else:
            model, processor = load_model(args.model)
        models = [(args.model_name or args.model, model, processor)]
        baseline = None if args.no_random_baseline else random_baseline(model, args.seed)
        if baseline is not None:
            models.append(("random init (same architecture)", baseline, processor))
        for other in args.compare:
            other_model, other_processor = load_model(other)
            models.append((other, other_model, other_processor))
    except (ValueError, FileNotFoundError, OSError) as error:
        parser.error(str(error))
    if args.modes == ["zero-shot"] and not text_side_trained(model):
        parser.error(
            f"--model {args.model} is a supervised-pretraining baseline whose text side is untrained: zero-shot "
            "means nothing for it; use --modes few-shot cross-validated"
        )
    precision = resolve_precision(args.mixed_precision, next(model.parameters()).device)
    print(precision.summary())
    if precision.warning:
        print(f"{parser.prog}: warning: {precision.warning}", file=sys.stderr)
    options = EvalOptions(
        tuple(args.modes),
        args.eval_split,
        args.fewshot_split,
        args.shots,
        1.0,
        args.batch_size,
        args.num_workers,
        args.bootstrap,
        args.seed,
        precision=precision.mixed_precision,
    )
    for dataset in datasets:
        if all(item.split is None for item in dataset.items):
            print(
                f"{dataset.name}: no split column: evaluated whole ({len(dataset.items)} images; few-shot probes "
                f"train on {args.shots} per class and score the rest)",
                file=sys.stderr,
            )
    figures = args.output_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, model_, processor_ in tqdm(models, desc="models"):
        for dataset in datasets:
            try:
                results, raw = evaluate_dataset(
                    model_, processor_, name, dataset, options, estimate_batch_norm=model_ is baseline
                )
            except ValueError as error:
                parser.error(f"{dataset.name}: {error}")
            entries += results
            for entry in results:
                if entry["unreadable"]:
                    print(
                        f"{dataset.name}: {len(entry['unreadable'])} unreadable images skipped and listed in "
                        f"results.json, e.g. {entry['unreadable'][0]}",
                        file=sys.stderr,
                    )
                    break
            if name == models[0][0]:
                for entry in results:
                    stem = f"{dataset.task.name}_{entry['mode']}"
                    plot_confusion(entry, figures / f"{stem}_confusion.png")
                    plot_roc(entry, *raw[entry["mode"]], figures / f"{stem}_roc.png")
                if args.explain is not None:
                    write_dataset_examples(model_, processor_, dataset, args, precision.mixed_precision)
    table = markdown_table(entries)
    details = "\n\n".join(per_class_table(e) for e in entries if e["model"] == models[0][0])
    (args.output_dir / "results.json").write_text(json.dumps(entries, indent=2))
    (args.output_dir / "results.md").write_text(f"{table}\n\nPer class:\n\n{details}\n")
    (args.output_dir / "model_index.json").write_text(json.dumps(model_index(entries, models[0][0]), indent=2))
    print(table)
    print(f"wrote {args.output_dir}/results.json, results.md, model_index.json and {figures}/*.png")
    return 0
