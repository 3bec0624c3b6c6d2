"""Training data: the embedded synthetic default (generated once per machine into a cache folder) or a given
dataset, its checks before the first step, and the training stream of one process."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from huggingface_hub import constants
from tqdm.auto import tqdm

from ..augment import FundusAugment
from ..captions import Captioner
from ..pixels import ImagePreparer
from ..schema import CAPTIONED_COLUMNS
from ..seeding import stable_seed
from ..streaming import FundusStream, build_stream, open_parquet_stream, resolve_data_files
from ..synthetic.labels import resolve_prevalence
from ..synthetic.writer import GENERATOR_VERSION, SampleMaker, write_parquet_dataset
from .config import TrainConfig

logger = logging.getLogger(__name__)
# What a training row needs: the image, and every label a caption is made from (all required by the schema).
TRAINING_COLUMNS = ("image", *CAPTIONED_COLUMNS)


class DatasetError(ValueError):
    """The dataset cannot be trained on as configured; the message names the dataset, split or columns."""


def embedded_dataset_dir(config: TrainConfig) -> Path:
    """The cache folder of the embedded default; its name carries every setting that changes its contents."""
    mix = stable_seed(*sorted((config.synthetic_prevalence or {}).items())) % 10**8
    name = (
        f"synthetic-v{GENERATOR_VERSION}-s{config.synthetic_seed}-{config.synthetic_image_size}px-"
        f"{config.synthetic_train}-{config.synthetic_validation}-mix{mix:08d}"
    )
    if config.synthetic_image_format != "png":
        name += f"-{config.synthetic_image_format}"
    return Path(config.cache_dir) / name


def ensure_embedded_dataset(config: TrainConfig, workers: int, show_progress: bool = True) -> Path:
    """Generate the embedded default if it is not complete yet (resumes at shard granularity).

    Safe to call from every process at once: the writer holds the folder's lock (`write_parquet_dataset`), so the
    first process generates, the others wait for it (the lock reports whom they wait for) and then find every shard
    complete. No process-group collective is
    involved, so a long generation cannot time out the waiting processes, and machines without a shared
    filesystem each generate their own copy.
    """
    folder = embedded_dataset_dir(config)
    splits = {config.train_split: config.synthetic_train, config.eval_split: config.synthetic_validation}
    prevalence = resolve_prevalence(config.synthetic_prevalence)
    maker = SampleMaker(
        config.synthetic_image_size,
        config.synthetic_seed,
        tuple(sorted(prevalence.items())),
        image_format=config.synthetic_image_format,
    )
    rows_per_shard = max(1, min(250, config.synthetic_train // 32))
    total = sum(splits.values())
    with tqdm(total=total, desc="generating embedded dataset", unit="img", disable=not show_progress) as progress:
        report = write_parquet_dataset(
            folder,
            splits,
            maker,
            rows_per_shard=rows_per_shard,
            workers=workers,
            on_row=lambda: progress.update(1),
            on_skip=lambda spec: progress.update(spec.num_rows),
        )
    logger.info("embedded dataset: %d shards written, %d already complete", len(report.written), len(report.skipped))
    return folder


def dataset_source(config: TrainConfig, workers: int = 1, show_progress: bool = True) -> str:
    """Where to stream from: `config.dataset`, or the embedded default (every process calls this; see
    `ensure_embedded_dataset`)."""
    if config.dataset is not None:
        return config.dataset
    folder = ensure_embedded_dataset(config, workers, show_progress)
    logger.info("embedded synthetic dataset at %s", folder)
    return str(folder)


def split_files(source: str, split: str) -> list[str]:
    """The parquet files of `split` of `source`; a Hub that cannot be reached is named as such."""
    try:
        return resolve_data_files(source, split)
    except ConnectionError as error:
        why = "offline mode: HF_HUB_OFFLINE=1" if constants.HF_HUB_OFFLINE else "no connection"
        raise DatasetError(
            f"dataset {source}: the Hugging Face Hub cannot be reached ({why}); give a local copy's folder instead "
            f"({error})"
        ) from None


def check_dataset(config: TrainConfig) -> None:
    """Before the first step: both splits of `config.dataset` exist and hold every column of `TRAINING_COLUMNS`
    (the embedded default is generated so). Raises `DatasetError` naming what is missing."""
    if config.dataset is None:
        return
    for split in dict.fromkeys((config.train_split, config.eval_split)):
        try:
            files = split_files(config.dataset, split)
            columns = open_parquet_stream(files[:1], split).column_names
        except DatasetError:
            raise
        except (FileNotFoundError, ValueError) as error:  # a missing split, or no image column
            raise DatasetError(str(error)) from error
        missing = [column for column in TRAINING_COLUMNS if column not in columns]
        if missing:
            raise DatasetError(
                f"the {split!r} split of {config.dataset} lacks columns that training needs: {missing} (in "
                f"{files[0]}; see visionclip/schema.py)"
            )


def training_stream(
    config: TrainConfig, source: str, image_processor: ImagePreparer, tokenizer: Any, accelerator: Accelerator
) -> FundusStream:
    """This process's endless stream of micro-batches of `config.train_split` of `source`."""
    return build_stream(
        source,
        image_processor,
        tokenizer,
        config.micro_batch_size(accelerator.num_processes),
        split=config.train_split,
        filters=config.filters,
        balance_by=config.balance_by,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        num_workers=config.num_workers,
        epochs=None,
        seed=config.seed,
        shuffle_buffer=config.shuffle_buffer,
        augment=FundusAugment() if config.augment else None,
        captioner=Captioner(seed=config.seed, findings_per_caption=config.findings_per_caption),
    )
