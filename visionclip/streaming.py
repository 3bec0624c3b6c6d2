"""Streaming SynFundus-1M-schema data for training: split across processes once, shuffle, decode, augment, caption,
tokenize and batch inside DataLoader workers, epoch after epoch, and resume mid-epoch.

Sources: a Hub dataset id, a local folder written by the converter or the generator (``data/<split>-*.parquet``),
or a parquet glob. Each process builds its stream with its rank and its number of DataLoader workers; each worker
is one reader with its own disjoint parquet files, or row groups when files are fewer than readers
(`visionclip.stream_parts`). That is the only split: do not also give the DataLoader to `accelerator.prepare`.

One DataLoader serves a whole run: each worker's iterator runs epoch after epoch itself (a new part order, shuffle
and captions each epoch), so worker processes start once. Batches hold uint8 pixels; `PixelNormalizer` rescales and
normalises them on the device.

Resuming: every batch carries ``stream_state`` = {worker, epoch, part, row}: where that worker's reading stood
after the batch. The trainer passes consumed batches to :meth:`FundusStream.record_batch` and checkpoints
:meth:`FundusStream.state_dict` (JSON-serialisable; it records the world size, worker count and data files it is
valid for, and each worker's own epoch); on restart each worker continues from its own position. Rows that sat in a
worker's shuffle buffer at save time are not delivered in the rest of that epoch; nothing repeats.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import logging
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image

from .augment import FundusAugment
from .captions import Captioner
from .schema import CAPTIONED_COLUMNS
from .seeding import stable_seed
from .stream_parts import StreamPosition, plan_reader_parts, read_part
from .stream_report import EpochTally, StreamError

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
    """Batches of uint8 `pixel_values`, tokenized captions, `labels` (columns `CAPTIONED_COLUMNS`) and
    `caption_facts` (what each caption asserts and denies, see `Captioner.caption_with_facts`) for one process.

    Each of the `max(1, num_workers)` DataLoader workers reads its own parts (`plan_reader_parts`) in an order
    reshuffled each epoch, through an example shuffle buffer of `shuffle_buffer` undecoded rows, for `epochs` epochs
    per iteration (None: without end). Iterate it with `make_dataloader`.
    """

    def __init__(
        self,
        files: list[str],
        image_processor: Any,
        tokenizer: Any,
        batch_size: int,
        *,
        split: str = "train",
        token: str | bool | None = None,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        epochs: int | None = 1,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        captioner: Captioner | None = None,
        augment: FundusAugment | None = None,
        filters: Mapping[str, list[int]] | None = None,
        keep_probability: Mapping[str, Mapping[int, float]] | None = None,
        drop_last: bool = True,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be at least 1 (or None for no end), got {epochs}")
        if not files:
            raise ValueError("No data files")
        self.files, self.split, self.token = list(files), split, token
        self.image_processor, self.tokenizer, self.batch_size = image_processor, tokenizer, batch_size
        self.rank, self.world_size, self.num_workers, self.epochs = rank, world_size, num_workers, epochs
        self.seed, self.shuffle_buffer = seed, max(1, shuffle_buffer)
        self.captioner = captioner or Captioner(seed=seed)
        self.augment = augment
        self.filters = {column: {int(v) for v in values} for column, values in (filters or {}).items()}
        self.keep_probability = {c: dict(p) for c, p in (keep_probability or {}).items()}
        self.drop_last = drop_last
        self.readers_per_process = max(1, num_workers)
        readers = world_size * self.readers_per_process
        layout = f"{world_size} process(es) x {self.readers_per_process} DataLoader worker(s)"
        first = rank * self.readers_per_process
        self.reader_parts = plan_reader_parts(self.files, readers, token, layout)[
            first : first + self.readers_per_process
        ]
        self.data_digest = hashlib.sha1("\n".join(Path(f).name for f in self.files).encode()).hexdigest()[:16]
        self.epoch = 0  # the latest epoch this process has consumed a batch of (or starts at)
        self._start: dict[int, StreamPosition] = {}  # where each worker starts (set_epoch, load_state_dict)
        self._consumed: dict[int, StreamPosition] = {}  # where each worker stood after its last consumed batch
        self._reported_unreadable: dict[int, int] = {}

    # ------------------------------------------------------------------------------------------ epochs, state
    def set_epoch(self, epoch: int) -> None:
        """Start every worker at the beginning of `epoch` (a new part order, shuffle and captions), forgetting any
        position. Call before creating the DataLoader iterator."""
        self.epoch = epoch
        self._start = {worker: StreamPosition(epoch) for worker in range(self.readers_per_process)}
        self._consumed = {}

    def record_batch(self, batch: Mapping[str, Any]) -> None:
        """Note that `batch` was consumed (call for every batch the trainer used)."""
        state = batch["stream_state"]
        self._consumed[int(state["worker"])] = StreamPosition.from_dict(state)
        self.epoch = max(self.epoch, int(state["epoch"]))

    def position(self, worker: int) -> StreamPosition:
        """Where `worker` continues: after its last consumed batch, else where it was set to start."""
        return self._consumed.get(worker) or self._start.get(worker) or StreamPosition(self.epoch)

    def state_dict(self) -> dict[str, Any]:
        """This process's position, JSON-serialisable, with the layout it is valid for."""
        return {
            "world_size": self.world_size,
            "rank": self.rank,
            "num_workers": self.num_workers,
            "data_digest": self.data_digest,
            "epoch": self.epoch,
            "workers": [self.position(worker).to_dict() for worker in range(self.readers_per_process)],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from `state_dict()` of the same layout; refuses another world size, worker count or data."""
        missing = [key for key in ("world_size", "rank", "num_workers", "data_digest", "workers") if key not in state]
        if missing:
            raise ValueError(
                f"cannot resume the data stream: its saved state lacks {', '.join(missing)} (saved by an older "
                "version, whose positions cannot be mapped onto this stream's readers exactly)"
            )
        saved_readers = max(1, int(state["num_workers"]))
        mismatches = [
            (f"world size {state['world_size']}", f"{self.world_size}", state["world_size"] != self.world_size),
            (f"rank {state['rank']}", f"rank {self.rank}", state["rank"] != self.rank),
            (
                f"--num-workers {state['num_workers']}",
                f"--num-workers {self.num_workers}",
                saved_readers != self.readers_per_process,
            ),
            ("other data files", "these", state["data_digest"] != self.data_digest),
        ]
        for saved, current, differs in mismatches:
            if differs:
                raise ValueError(
                    f"cannot resume the data stream: the checkpoint was saved with {saved}, this run has {current}; "
                    "each reader's position only holds for the same processes, DataLoader workers and data files "
                    "(resume with those, or start a new run)"
                )
        self.epoch = int(state["epoch"])
        self._start = {worker: StreamPosition.from_dict(p) for worker, p in enumerate(state["workers"])}
        self._consumed = {}

    # ------------------------------------------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if workers != self.readers_per_process:
            raise ValueError(
                f"this stream was built for num_workers={self.num_workers}, its DataLoader has {workers} "
                "worker(s): iterate it with make_dataloader(stream)"
            )
        position = self.position(worker)
        try:
            for _ in itertools.count() if self.epochs is None else range(self.epochs):
                yield from self._epoch_batches(worker, position)
                position = StreamPosition(position.epoch + 1)
        except StreamError as error:  # handed to the loop's process, which raises it (see StreamLoader)
            yield {"stream_error": str(error)}

    def _epoch_batches(self, worker: int, start: StreamPosition) -> Iterator[dict[str, Any]]:
        """One epoch of one worker's batches, from `start` (an epoch's beginning or a saved position)."""
        reader = self.rank * self.readers_per_process + worker
        epoch = start.epoch
        parts = list(self.reader_parts[worker])
        random.Random(stable_seed(self.seed, epoch, reader, "files")).shuffle(parts)
        read_up_to = [start]

        def rows() -> Iterator[dict[str, Any]]:
            for index in range(start.part, len(parts)):
                skip = start.row if index == start.part else 0
                for row_number, row in enumerate(read_part(parts[index], skip, self.token), start=skip + 1):
                    read_up_to[0] = StreamPosition(epoch, index, row_number)
                    yield row

        tally, items, batches = EpochTally(), [], 0
        for example in self._shuffled(rows(), reader, epoch):
            item = self._example_to_item(example, epoch, tally)
            if item is None:
                continue
            items.append(item)
            if len(items) == self.batch_size:
                yield self._collate(items, worker, read_up_to[0])
                items, batches = [], batches + 1
        if items and not self.drop_last:
            yield self._collate(items, worker, read_up_to[0])
            batches += 1
        self._finish_epoch(worker, start, batches, tally)

    def _finish_epoch(self, worker: int, start: StreamPosition, batches: int, tally: EpochTally) -> None:
        """A whole epoch without a batch is an error naming why; unreadable images are reported in bounded form."""
        reader = self.rank * self.readers_per_process + worker
        where = (
            f"reader {reader} of {self.world_size * self.readers_per_process} (process {self.rank}, worker {worker})"
        )
        if batches == 0 and start.at_epoch_start:
            balance = next(iter(self.keep_probability), None)
            raise StreamError(tally.no_batch_message(where, start.epoch, self.batch_size, self.filters, balance))
        if tally.unreadable and self._reported_unreadable.get(reader) != tally.unreadable:
            self._reported_unreadable[reader] = tally.unreadable
            logger.warning(
                "%s: %s in epoch %d and were skipped (reported again only if that count changes)",
                where,
                tally.unreadable_summary(),
                start.epoch,
            )

    def _shuffled(self, rows: Iterator[dict[str, Any]], reader: int, epoch: int) -> Iterator[dict[str, Any]]:
        """Reservoir-style shuffle buffer. Rows held in it when a checkpoint is taken are skipped on resume."""
        rng = random.Random(stable_seed(self.seed, epoch, reader, "buffer"))
        buffer: list[dict[str, Any]] = []
        for row in rows:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(row)
                if len(buffer) < self.shuffle_buffer:
                    continue
            index = rng.randrange(len(buffer))
            buffer[index], buffer[-1] = buffer[-1], buffer[index]
            yield buffer.pop()
        rng.shuffle(buffer)
        yield from buffer

    def _example_to_item(self, example: dict[str, Any], epoch: int, tally: EpochTally) -> dict[str, Any] | None:
        record = {k: v for k, v in example.items() if k != "image"}
        key = record.get("file_md5") or record.get("file_name")
        rng = random.Random(stable_seed(key, epoch, self.seed, "sample"))
        tally.rows += 1
        for column, allowed in self.filters.items():
            if tally.filtered(column, int(record[column]), allowed):
                return None
        for column, keep in self.keep_probability.items():
            if rng.random() >= keep.get(int(record[column]), 1.0):
                tally.balanced_out += 1
                return None
        # with augmentation the crop is resized, padded and warped in one resampling (FundusAugment.place)
        load = self.image_processor.prepare_image if self.augment is None else self.image_processor.load_and_crop
        try:
            image = load(example["image"])
        except (ValueError, OSError) as error:
            tally.unreadable_image(key, error)
            return None
        tally.usable += 1
        if self.augment is not None:
            image, flipped = self.augment.place(image, self.image_processor.placement(*image.size), rng)
            if flipped and record.get("eyes_side") in ("left", "right"):
                record["eyes_side"] = "right" if record["eyes_side"] == "left" else "left"
        caption, caption_facts = self.captioner.caption_with_facts(record, epoch)
        return {
            "image": image,
            "caption": caption,
            "caption_facts": caption_facts,
            "labels": [int(record.get(column) or 0) for column in CAPTIONED_COLUMNS],
        }

    def _collate(self, items: list[dict[str, Any]], worker: int, position: StreamPosition) -> dict[str, Any]:
        captions = [item["caption"] for item in items]
        batch = dict(self.tokenizer(captions, padding=True, truncation=True, return_tensors="pt"))
        batch["pixel_values"] = uint8_pixels([item["image"] for item in items])
        batch["labels"] = torch.tensor([item["labels"] for item in items], dtype=torch.long)
        batch["caption_facts"] = torch.tensor([item["caption_facts"] for item in items], dtype=torch.long)
        batch["captions"] = captions
        batch["stream_state"] = {"worker": worker, **position.to_dict()}
        return batch


def build_stream(
    source: str,
    image_processor: Any,
    tokenizer: Any,
    batch_size: int,
    *,
    split: str = "train",
    token: str | bool | None = None,
    filters: Mapping[str, list[int]] | None = None,
    balance_by: str | None = None,
    **kwargs: Any,
) -> FundusStream:
    """The stream of one process from a dataset folder, parquet glob or Hub id; `kwargs` go to `FundusStream`.

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
    return FundusStream(
        files,
        image_processor,
        tokenizer,
        batch_size,
        split=split,
        token=token,
        filters=filters,
        keep_probability=keep_probability,
        **kwargs,
    )


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


def uint8_pixels(images: list[Image.Image]) -> torch.Tensor:
    """Prepared RGB images of one size as a `(batch, 3, H, W)` uint8 tensor: a quarter of the float32 size in
    DataLoader queues and shared memory; `PixelNormalizer` turns it into model input on the device."""
    return torch.from_numpy(np.stack([np.asarray(image).transpose(2, 0, 1) for image in images]))


class PixelNormalizer:
    """The image processor's rescale and normalise (`pixel_gain_offset`), applied on `device` to uint8 pixels."""

    def __init__(self, image_processor: Any, device: torch.device | str):
        gain, offset = image_processor.pixel_gain_offset()
        self.gain = torch.from_numpy(gain).unsqueeze(0).to(device)
        self.offset = torch.from_numpy(offset).unsqueeze(0).to(device)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 `(batch, 3, H, W)` (pinned for a non-blocking copy) -> float32 model input on the device."""
        if pixels.dtype != torch.uint8:
            raise TypeError(f"expected uint8 pixels from the stream, got {pixels.dtype}")
        pixels = pixels.to(self.gain.device, non_blocking=True)
        return pixels.float().mul_(self.gain).add_(self.offset)
