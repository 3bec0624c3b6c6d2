"""Training configuration: one typed dataclass, readable from a YAML file and overridable from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..losses import LABEL_SIMILARITIES, LOSSES
from ..paths import cache_dir
from ..precision import PRECISIONS
from ..synthetic.labels import resolve_prevalence
from ..synthetic.writer import IMAGE_FORMATS

MIXED_PRECISION = PRECISIONS  # auto (bf16 only where the device runs it natively), no, bf16, fp16
# The embedded default's label mix: fewer fully normal eyes and every finding at 10%, so that a 15-minute CPU run
# sees each finding often enough; the generator's own defaults resemble a screening population instead.
TRAINING_MIX = {
    "healthy": 0.25,
    **{f"is_{name}": 0.10 for name in ("amd", "aon", "crp", "dme", "em", "gc", "mh", "htr", "pm", "rvo", "treated")},
}
REPORTERS = ("tensorboard", "wandb", "none")
OBJECTIVES = ("contrastive", "supervised")  # supervised: visionclip.training.supervised
# What may change when a run resumes: its length, and options that change how the run is watched, stored or
# scheduled on the machine but not what it computes. Any other difference makes it another run.
RESUME_MAY_CHANGE = (
    "max_steps",
    "resume",
    "overwrite",
    "output_dir",
    "cache_dir",
    "save_every",
    "keep_checkpoints",
    "eval_every",
    "log_every",
    "report_to",
    "cpu_threads",
    "max_nonfinite",
    # `auto` resolves per machine (bf16 where native, else fp32); checkpoints hold fp32 weights either way, so a run
    # may continue on a machine that resolves it differently
    "mixed_precision",
)


def option(default: Any = MISSING, *, help: str, default_factory: Callable[[], Any] | None = None) -> Any:
    """A `TrainConfig` field with its `--help` text in the field's metadata."""
    if default_factory is not None:
        return field(default_factory=default_factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


def default_cache_dir() -> str:
    return str(cache_dir())


@dataclass
class TrainConfig:
    """Every option of `train.py`; each field's `help` metadata is its `--help` text."""

    # data
    dataset: str | None = option(
        None,
        help="Hub dataset id, local dataset folder or parquet glob; default: embedded synthetic set",
    )
    train_split: str = option("train", help="split to train on")
    eval_split: str = option("validation", help="held-out split for zero-shot evaluation during and after training")
    synthetic_train: int = option(12000, help="embedded default: number of generated training images")
    synthetic_validation: int = option(1200, help="embedded default: number of generated held-out images")
    synthetic_image_size: int = option(224, help="embedded default: generated image size (px)")
    synthetic_image_format: str = option(
        "jpeg",
        help="embedded default: jpeg (q95, decodes 6x faster) or png (lossless)",
    )
    synthetic_seed: int = option(0, help="embedded default: generator seed")
    synthetic_prevalence: dict | None = option(
        default_factory=lambda: dict(TRAINING_MIX),
        help="embedded default: label prevalences overriding the generator's (JSON object; default: the training mix with every finding at 0.10)",
    )
    cache_dir: str = option(default_factory=default_cache_dir, help="where the embedded default is generated once")
    num_workers: int = option(1, help="DataLoader workers per process (decode, augment, caption, tokenize)")
    shuffle_buffer: int = option(1000, help="rows in each reader's shuffle buffer")
    augment: bool = option(True, help="flips, rotation, zoom and colour jitter")
    filters: dict | None = option(
        None,
        help="keep rows whose column holds an allowed value, e.g. '{\"is_fundus\": [1]}'",
    )
    balance_by: str | None = option(None, help="column whose classes are sampled equally often (rejection sampling)")
    # model
    preset: str = option("small-pretrained", help="preset name or preset YAML file")
    vision_tower: str | None = option(
        None,
        help="start the vision tower from this packaged tower (efficientnet-lite0), Hub id or folder; "
        "default: the preset's pretrained tower if it names one; 'none': random",
    )
    text_tower: str | None = option(
        None,
        help="start the text tower (and tokenizer) from this packaged tower (all-minilm-l6-v2), Hub id or folder; "
        "default: the preset's pretrained tower if it names one; 'none': random",
    )
    lock_image: bool = option(True, help="freeze the vision tower (and its batch-norm statistics), as LiT does")
    lock_image_unlocked_layers: int = option(
        0, help="...but keep its last N blocks (and the layers after them) trainable"
    )
    lock_text: bool = option(False, help="freeze the text tower")
    lock_text_unlocked_layers: int = option(0, help="...but keep its last N layers trainable")
    gradient_checkpointing: bool = option(False, help="recompute activations in backward to save memory")
    torch_compile: bool = option(False, help="compile the model with torch.compile")
    channels_last: bool = option(
        True,
        help="channels-last image batches (faster CNN training; skipped where torch crashes)",
    )
    # optimisation
    objective: str = option(
        "contrastive",
        help="contrastive (image-text, --loss) or supervised (the image tower alone, binary cross-entropy over the "
        "synthetic findings plus ordinal DR grade: the Image+Fundus-style baseline; needs --lock-image false)",
    )
    loss: str = option("label_aware", help="clip, label_aware (FLAIR soft targets) or siglip")
    label_similarity: str = option(
        "exact",
        help="label_aware positives: exact (FLAIR), jaccard (overlap) or entailment",
    )
    findings_per_caption: int = option(
        0,
        help="state at most N of an image's findings per caption, resampled each epoch (0: all)",
    )
    batch_size: int = option(64, help="global contrastive batch per optimizer step (all processes x accumulation)")
    accum_steps: int = option(1, help="micro-batches per step; the contrastive batch stays the global batch")
    max_steps: int = option(250, help="optimizer steps")
    lr: float = option(1e-3, help="peak learning rate")
    min_lr: float = option(1e-5, help="final learning rate of the cosine schedule")
    tower_lr: float | None = option(
        1e-4, help="peak learning rate of the towers ('none': lr); lower than lr for pretrained towers under new heads"
    )
    warmup_steps: int = option(30, help="linear warm-up steps")
    weight_decay: float = option(0.1, help="AdamW weight decay (not on norms, biases, embeddings or the logit scale)")
    adam_beta1: float = option(0.9, help="AdamW beta1 (first-moment decay)")
    adam_beta2: float = option(0.98, help="AdamW beta2 (second-moment decay)")
    adam_eps: float = option(1e-6, help="AdamW epsilon")
    grad_clip: float = option(1.0, help="max gradient norm (0 disables)")
    mixed_precision: str = option(
        "auto",
        help="auto (bf16 where native, else fp32 on CPU, fp16 on older GPUs), no, bf16, fp16",
    )
    seed: int = option(0, help="seed of the model's initialisation, the data order, captions and augmentation")
    cpu_threads: int = option(0, help="torch threads per process on CPU (0: the machine's cores / local processes)")
    max_nonfinite: int = option(20, help="stop after this many consecutive non-finite losses")
    # output, checkpoints, logging
    output_dir: str = option("runs/visionclip", help="checkpoints/, logs/ and the Hub-ready model/ folder")
    save_every: int = option(100, help="checkpoint every N steps (and at the end)")
    keep_checkpoints: int = option(2, help="keep the newest K checkpoints")
    resume: str | None = option(None, help="'latest' or a checkpoint folder")
    overwrite: bool = option(
        False,
        help="replace the run in output_dir (its checkpoints/, model/, logs/, training_config.yaml)",
    )
    eval_every: int = option(125, help="zero-shot evaluation on the held-out split every N steps (0: only at the end)")
    eval_samples: int = option(1200, help="held-out images used for evaluation")
    log_every: int = option(10, help="scalars to the tracker every N steps")
    report_to: str = option("tensorboard", help="tensorboard, wandb or none")

    def validate(self) -> None:
        """Raise `ValueError` naming every invalid option."""
        problems = [
            f"{item.name} must be a finite number, got {getattr(self, item.name)}"
            for item in dataclasses.fields(self)
            if _option_types()[item.name][0] is float
            and getattr(self, item.name) is not None
            and not math.isfinite(getattr(self, item.name))
        ]
        if problems:  # the comparisons below mean nothing for inf or nan
            raise ValueError("Invalid training configuration:\n  " + "\n  ".join(problems))
        positive = (
            "batch_size",
            "accum_steps",
            "max_steps",
            "save_every",
            "keep_checkpoints",
            "log_every",
            "synthetic_train",
            "synthetic_validation",
            "eval_samples",
            "max_nonfinite",
        )
        problems += [
            f"{name} must be positive, got {getattr(self, name)}" for name in positive if getattr(self, name) < 1
        ]
        non_negative = (
            "num_workers",
            "warmup_steps",
            "eval_every",
            "weight_decay",
            "grad_clip",
            "lock_image_unlocked_layers",
            "lock_text_unlocked_layers",
            "shuffle_buffer",
            "cpu_threads",
        )
        problems += [
            f"{name} must not be negative, got {getattr(self, name)}"
            for name in non_negative
            if getattr(self, name) < 0
        ]
        if self.objective not in OBJECTIVES:
            problems.append(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.objective == "supervised" and self.lock_image:
            problems.append(
                "objective supervised trains the image tower, which lock_image freezes (it would train a head "
                "alone): pass --lock-image false"
            )
        if self.loss not in LOSSES:
            problems.append(f"loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        if self.label_similarity not in LABEL_SIMILARITIES:
            problems.append(f"label_similarity must be one of {LABEL_SIMILARITIES}, got {self.label_similarity!r}")
        if self.findings_per_caption < 0:
            problems.append(f"findings_per_caption must be 0 (all) or positive, got {self.findings_per_caption}")
        if self.mixed_precision not in MIXED_PRECISION:
            problems.append(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if self.report_to not in REPORTERS:
            problems.append(f"report_to must be one of {REPORTERS}, got {self.report_to!r}")
        if not self.lr > 0 or not 0 <= self.min_lr <= self.lr:
            problems.append(f"need 0 <= min_lr <= lr and lr > 0, got lr={self.lr}, min_lr={self.min_lr}")
        if self.tower_lr is not None and not self.tower_lr > 0:
            problems.append(f"tower_lr must be > 0 (or unset), got {self.tower_lr}")
        if self.warmup_steps >= self.max_steps:
            problems.append(f"warmup_steps ({self.warmup_steps}) must be below max_steps ({self.max_steps})")
        if self.synthetic_image_size < 32:
            problems.append(f"synthetic_image_size must be at least 32, got {self.synthetic_image_size}")
        if self.synthetic_image_format not in IMAGE_FORMATS:
            problems.append(
                f"synthetic_image_format must be one of {sorted(IMAGE_FORMATS)}, got {self.synthetic_image_format!r}"
            )
        if self.filters is not None and not all(isinstance(v, list) for v in self.filters.values()):
            problems.append(f"filters must map columns to lists of allowed values, got {self.filters!r}")
        if not self.output_dir:
            problems.append("output_dir must name a folder")
        if self.resume is not None and self.overwrite:
            problems.append("resume and overwrite exclude each other: continue the run in output_dir or replace it")
        if self.synthetic_prevalence is not None:
            try:
                resolve_prevalence(self.synthetic_prevalence)
            except ValueError as error:
                problems.append(f"synthetic_prevalence: {error}")
        if problems:
            raise ValueError("Invalid training configuration:\n  " + "\n  ".join(problems))

    def micro_batch_size(self, world_size: int) -> int:
        """Per-process rows of one micro-batch; the global batch must divide evenly."""
        parts = world_size * self.accum_steps
        if self.batch_size % parts:
            raise ValueError(
                f"batch_size {self.batch_size} does not divide into {world_size} processes x {self.accum_steps} "
                "accumulation steps"
            )
        return self.batch_size // parts

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resume_differences(self, saved: dict[str, Any]) -> list[str]:
        """The options (with both values) in which `saved`, the configuration of a checkpoint, differs from this
        one, except `RESUME_MAY_CHANGE`. An option missing from `saved` counts as its default."""
        defaults = TrainConfig().to_dict()
        return [
            f"{name} ({saved.get(name, defaults[name])!r} in the checkpoint, {value!r} now)"
            for name, value in self.to_dict().items()
            if name not in RESUME_MAY_CHANGE and saved.get(name, defaults[name]) != value
        ]


@functools.cache
def _option_types() -> dict[str, tuple[type, bool]]:
    """Each option's concrete type and whether it may be None (from `X` or `X | None` annotations)."""
    kinds = {}
    for name, annotation in typing.get_type_hints(TrainConfig).items():
        arguments = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
        kinds[name] = (next(a for a in arguments if a is not type(None)), type(None) in arguments)
    return kinds


def _yaml_value_fits(value: Any, kind: type, optional: bool) -> bool:
    """Whether a YAML value suits a field: null only where the field is optional, an int for a float, and never
    a boolean for a number (YAML's `true` is a Python bool, which is an int)."""
    if value is None:
        return optional
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, kind) or (kind is float and isinstance(value, int))


def _parse_value(kind: type, optional: bool, text: str) -> Any:
    if optional and text.lower() in ("none", "null"):
        return None
    if kind is bool:
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        return lowered in ("true", "1", "yes")
    if kind is dict:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({error})") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
        return value
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None


def build_parser(description: str) -> argparse.ArgumentParser:
    """`--config FILE` and one `--option-name VALUE` per field. Options left out stay out of the parsed namespace
    (`SUPPRESS`), so that the YAML file's values stand unless a flag overrides them."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="YAML file of options; command-line flags override it")
    kinds = _option_types()
    for item in dataclasses.fields(TrainConfig):
        kind, optional = kinds[item.name]
        parser.add_argument(
            "--" + item.name.replace("_", "-"),
            dest=item.name,
            type=functools.partial(_parse_value, kind, optional),
            default=argparse.SUPPRESS,
            metavar=kind.__name__.upper(),
            help=item.metadata["help"],
        )
    return parser


def _read_config_file(parser: argparse.ArgumentParser, config_file: Path) -> dict[str, Any]:
    """The options of a `--config` YAML file, each checked against its field's type."""
    if not config_file.is_file():
        parser.error(f"--config {config_file} does not exist")
    try:
        loaded = yaml.safe_load(config_file.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        parser.error(f"--config {config_file} is not readable YAML: {error}")
    if not isinstance(loaded, dict):
        parser.error(f"--config {config_file} must hold a mapping of options")
    kinds = _option_types()
    unknown = sorted(map(str, set(loaded) - set(kinds)))
    if unknown:
        parser.error(f"--config {config_file}: unknown options {unknown}")
    for name, (kind, optional) in kinds.items():
        if name in loaded and not _yaml_value_fits(loaded[name], kind, optional):
            expected = kind.__name__ + (" or null" if optional else "")
            parser.error(f"--config {config_file}: {name} should be {expected}, got {loaded[name]!r}")
    return loaded


def load_config(argv: list[str] | None = None, description: str = "") -> TrainConfig:
    """Defaults < `--config` YAML < command-line flags; validated."""
    parser = build_parser(description)
    args = vars(parser.parse_args(argv))
    config_file = args.pop("config", None)
    values = _read_config_file(parser, config_file) if config_file is not None else {}
    values.update(args)
    config = TrainConfig(**values)
    try:
        config.validate()
    except ValueError as error:
        parser.error(str(error))
    return config
