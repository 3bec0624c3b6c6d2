"""Training data: the embedded synthetic default (generated once per machine into a cache folder) or a given
dataset."""

from __future__ import annotations

import logging
from pathlib import Path

from ..captions import stable_seed
from ..streaming import resolve_data_files
from .config import TrainConfig

logger = logging.getLogger(__name__)


def embedded_dataset_dir(config: TrainConfig) -> Path:
    """The cache folder of the embedded default; its name carries every setting that changes its contents."""
    from ..synthetic.writer import GENERATOR_VERSION

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
    from tqdm.auto import tqdm

    from ..synthetic.labels import resolve_prevalence
    from ..synthetic.writer import SampleMaker, write_parquet_dataset

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
    return resolve_data_files(source, split)
