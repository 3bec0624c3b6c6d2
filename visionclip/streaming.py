"""Streaming SynFundus-1M-schema data for training, in stages that run inside DataLoader workers, epoch after
epoch, and resume mid-epoch:

    stream_source.FileSource          rank/worker split, part order, shuffle buffer, resume state -> rows
    stream_examples.ExampleTransform  filter and balance, decode and crop, augment, caption     -> examples
    stream_examples.Collator          tokenise, tensors                                          -> batches

`FundusStream` runs them for one process; `build_stream` builds it from a source and options. The image
processor's part is the `visionclip.pixels.ImagePreparer` interface.

Sources: a Hub dataset id, a local folder written by the converter or the generator (``data/<split>-*.parquet``),
or a parquet glob. Each process builds its stream with its rank and its number of DataLoader workers; each worker
is one reader with its own disjoint parquet files, or row groups when files are fewer than readers
(`visionclip.stream_parts`). That is the only split: do not also give the DataLoader to `accelerator.prepare`.

One DataLoader serves a whole run: each worker's iterator runs epoch after epoch itself (a new part order, shuffle
and captions each epoch), so worker processes start once. Batches hold uint8 pixels; `visionclip.pixels.
PixelNormalizer` rescales and normalises them on the device.

Resuming: every batch carries ``stream_state`` = {worker, epoch, part, row}: where that worker's reading stood
after the batch. The trainer passes consumed batches to :meth:`FundusStream.record_batch` and checkpoints
:meth:`FundusStream.state_dict` (JSON-serialisable; it records the world size, worker count and data files it is
valid for, and each worker's own epoch); on restart each worker continues from its own position. Rows that sat in a
worker's shuffle buffer at save time are not delivered in the rest of that epoch; nothing repeats.
"""

from __future__ import annotations

import glob
import itertools
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import datasets
import torch

from .augment import FundusAugment
from .captions import Captioner
from .pixels import ImagePreparer
from .stream_examples import Collator, ExampleTransform
from .stream_parts import StreamPosition
from .stream_report import EpochTally, StreamError
from .stream_source import FileSource

logger = logging.getLogger(__name__)


def resolve_data_files(source: str, split: str = "train", token: str | bool | None = None) -> list[str]:
    """The parquet files of `split` for a local dataset folder, a parquet glob or a Hub dataset id."""
    path = Path(source)
    if any(ch in source for ch in "*?["):
        files = sorted(glob.glob(source))
        if not files:
            raise FileNotFoundError(f"No parquet files match {source!r}")
        return files
    if path.is_dir():
        files = sorted(path.glob(f"data/{split}-*.parquet")) or sorted(path.glob(f"**/{split}-*.parquet"))
        if not files:
            available = sorted({p.name.split("-")[0] for p in path.glob("**/*.parquet")})
            raise FileNotFoundError(f"No '{split}' parquet shards in {path} (splits found: {available or 'none'})")
        return [str(f) for f in files]
    looks_like_path = source.startswith((".", "/", "~")) or source.count("/") > 1 or path.suffix == ".parquet"
    if looks_like_path or path.exists():
        raise FileNotFoundError(f"Dataset path {source!r} does not exist or is not a folder of parquet shards")
    if source.count("/") != 1:
        raise ValueError(f"{source!r} is neither a local folder, a parquet glob nor a Hub dataset id (owner/name)")
    data_files = datasets.load_dataset_builder(source, token=token).config.data_files or {}
    if split not in data_files:
        raise ValueError(f"Hub dataset {source} has no split {split!r} (splits: {sorted(data_files)})")
    return [str(f) for f in data_files[split]]


def open_parquet_stream(
    files: list[str], split: str = "train", token: str | bool | None = None
) -> datasets.IterableDataset:
    """An undecoded streaming view of parquet files (image bytes stay bytes until a worker decodes them)."""
    stream = datasets.load_dataset("parquet", data_files={split: files}, split=split, streaming=True, token=token)
    if "image" not in stream.column_names:
        raise ValueError(f"{files[0]}: no 'image' column (columns: {stream.column_names})")
    return stream.cast_column("image", datasets.Image(decode=False))


def label_frequencies(files: list[str], column: str, sample: int = 5000) -> dict[int, float]:
    """Frequency of each value of `column`, read without images (from at most `sample` rows)."""
    counts: dict[int, int] = {}
    for row in open_parquet_stream(files).select_columns([column]).take(sample):
        counts[int(row[column])] = counts.get(int(row[column]), 0) + 1
    if not counts:
        raise ValueError(f"{files[0]}: no rows")
    total = sum(counts.values())
    return {value: count / total for value, count in sorted(counts.items())}


class FundusStream(torch.utils.data.IterableDataset):
    """Batches of uint8 `pixel_values`, tokenized captions, `labels` (columns `LABEL_VECTOR_COLUMNS`) and
    `caption_facts` (what each caption asserts and denies, see `Captioner.caption_with_facts`) for one process,
    from three stages: `source` (`FileSource`: the rank/worker split, part order, shuffle buffer and resume state)
    -> `transform` (`ExampleTransform`: filter, decode and crop, augment, caption) -> `collate` (`Collator`:
    tokenise, tensors).

    Each DataLoader worker iterates its own reader for `epochs` epochs (None: without end); iterate the stream with
    `make_dataloader`. A reader's epoch without a batch is a `StreamError` naming why.
    """

    def __init__(
        self,
        source: FileSource,
        transform: ExampleTransform,
        collate: Collator,
        batch_size: int,
        *,
        epochs: int | None = 1,
        drop_last: bool = True,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be at least 1 (or None for no end), got {epochs}")
        self.source, self.transform, self.collate = source, transform, collate
        self.batch_size, self.epochs, self.drop_last = batch_size, epochs, drop_last
        self.num_workers = source.num_workers
        self._reported_unreadable: dict[int, int] = {}

    # ------------------------------------------------------------------------------------------ epochs, state
    @property
    def epoch(self) -> int:
        """The latest epoch this process has consumed a batch of (or starts at)."""
        return self.source.epoch

    def set_epoch(self, epoch: int) -> None:
        """Start every worker at the beginning of `epoch` (a new part order, shuffle and captions), forgetting any
        position. Call before creating the DataLoader iterator."""
        self.source.set_epoch(epoch)

    def record_batch(self, batch: Mapping[str, Any]) -> None:
        """Note that `batch` was consumed (call for every batch the trainer used)."""
        state = batch["stream_state"]
        self.source.record(int(state["worker"]), StreamPosition.from_dict(state))

    def state_dict(self) -> dict[str, Any]:
        """This process's position, JSON-serialisable, with the layout it is valid for (see `FileSource`)."""
        return self.source.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from `state_dict()` of the same layout; refuses another world size, worker count or data."""
        self.source.load_state_dict(state)

    # ------------------------------------------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if workers != self.source.readers_per_process:
            raise ValueError(
                f"this stream was built for num_workers={self.num_workers}, its DataLoader has {workers} "
                "worker(s): iterate it with make_dataloader(stream)"
            )
        position = self.source.position(worker)
        try:
            for _ in itertools.count() if self.epochs is None else range(self.epochs):
                yield from self._epoch_batches(worker, position)
                position = StreamPosition(position.epoch + 1)
        except StreamError as error:  # handed to the loop's process, which raises it (see StreamLoader)
            yield {"stream_error": str(error)}

    def _epoch_batches(self, worker: int, start: StreamPosition) -> Iterator[dict[str, Any]]:
        """One epoch of one worker's batches, from `start` (an epoch's beginning or a saved position)."""
        tally, items, batches, position = EpochTally(), [], 0, start
        for row, position in self.source.rows(worker, start):
            item = self.transform(row, start.epoch, tally)
            if item is None:
                continue
            items.append(item)
            if len(items) == self.batch_size:
                yield self.collate(items, worker, position)
                items, batches = [], batches + 1
        if items and not self.drop_last:
            yield self.collate(items, worker, position)
            batches += 1
        self._finish_epoch(worker, start, batches, tally)

    def _finish_epoch(self, worker: int, start: StreamPosition, batches: int, tally: EpochTally) -> None:
        """A whole epoch without a batch is an error naming why; unreadable images are reported in bounded form."""
        where = self.source.describe_reader(worker)
        if batches == 0 and start.at_epoch_start:
            raise StreamError(
                tally.no_batch_message(
                    where, start.epoch, self.batch_size, self.transform.filters, self.transform.balance_column
                )
            )
        reader = self.source.reader(worker)
        if tally.unreadable and self._reported_unreadable.get(reader) != tally.unreadable:
            self._reported_unreadable[reader] = tally.unreadable
            logger.warning(
                "%s: %s in epoch %d and were skipped (reported again only if that count changes)",
                where,
                tally.unreadable_summary(),
                start.epoch,
            )


def build_stream(
    source: str,
    image_processor: ImagePreparer,
    tokenizer: Any,
    batch_size: int,
    *,
    split: str = "train",
    token: str | bool | None = None,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    seed: int = 0,
    shuffle_buffer: int = 1000,
    captioner: Captioner | None = None,
    augment: FundusAugment | None = None,
    filters: Mapping[str, list[int]] | None = None,
    balance_by: str | None = None,
    epochs: int | None = 1,
    drop_last: bool = True,
) -> FundusStream:
    """The stream of one process (rank `rank` of `world_size`, `num_workers` DataLoader workers) from a dataset
    folder, parquet glob or Hub id.

    `filters` keeps rows whose column holds one of the allowed values; `balance_by` keeps each row with
    probability (rarest class frequency / its class frequency), so classes of that column arrive equally often.
    """
    files = resolve_data_files(source, split, token)
    columns = open_parquet_stream(files[:1], split, token).column_names
    for column in [*(filters or {}), *([balance_by] if balance_by else [])]:
        if column not in columns:
            raise ValueError(f"column {column!r} is not in the dataset (columns: {columns})")
    keep_probability = None
    if balance_by is not None:
        frequencies = label_frequencies(files, balance_by)
        rarest = min(frequencies.values())
        keep_probability = {balance_by: {value: rarest / freq for value, freq in frequencies.items()}}
    reader = FileSource(
        files,
        rank=rank,
        world_size=world_size,
        num_workers=num_workers,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        token=token,
    )
    transform = ExampleTransform(
        image_processor,
        seed=seed,
        captioner=captioner,
        augment=augment,
        filters=filters,
        keep_probability=keep_probability,
    )
    return FundusStream(reader, transform, Collator(tokenizer), batch_size, epochs=epochs, drop_last=drop_last)


class StreamLoader(torch.utils.data.DataLoader):
    """A DataLoader over a `FundusStream` that raises a reader's `StreamError` in the iterating process, with the
    reader's own message (a worker hands it over as a batch holding only ``stream_error``)."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in super().__iter__():
            if "stream_error" in batch:
                raise StreamError(batch["stream_error"])
            yield batch


def make_dataloader(stream: FundusStream, pin_memory: bool = False) -> StreamLoader:
    """The one DataLoader of a stream, with its `num_workers` workers (they decode, augment and tokenize).
    `pin_memory` (for a CUDA device) lets the trainer copy batches to the device without blocking.

    Workers are not persistent: a stream's iterator runs all its epochs itself, and a persistent worker would keep
    its copy of the stream, ignoring a later `set_epoch` or `load_state_dict`."""
    return StreamLoader(
        stream,
        batch_size=None,
        num_workers=stream.num_workers,
        prefetch_factor=2 if stream.num_workers else None,
        pin_memory=pin_memory,
        # its own generator: creating the iterator then draws no number from the global one, so a resumed run
        # draws the same random numbers (dropout, ...) as an uninterrupted one
        generator=torch.Generator(),
    )
