"""Streaming SynFundus-1M-schema data for training: open, split across processes once, shuffle, decode, augment,
caption, tokenize and batch inside DataLoader workers, and resume mid-epoch.

Sources: a Hub dataset id, a local folder written by the converter or the generator (``data/<split>-*.parquet``),
or a parquet glob. Each process builds its stream with its rank; each DataLoader worker of each process then reads
its own disjoint set of parquet files (reader ``rank * num_workers + worker`` of ``world_size * num_workers``), so
write at least that many shards. That is the only split: do not also give the DataLoader to `accelerator.prepare`.

Resuming: every batch carries ``stream_state`` = (worker id, that worker's `datasets` state after the batch). The
trainer passes consumed batches to :meth:`FundusStream.record_batch` and checkpoints :meth:`FundusStream.state_dict`;
on restart each worker continues from its own saved file position. Rows that sat in a worker's shuffle buffer at
save time are not delivered in the rest of that epoch (as with `datasets`' own shuffle buffer); nothing repeats.
"""

from __future__ import annotations

import glob
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
from .captions import CAPTIONED_COLUMNS, Captioner, stable_seed

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
    """Batches of `pixel_values`, tokenized captions, `labels` (columns `CAPTIONED_COLUMNS`) and `caption_facts`
    (what each caption asserts and denies, see `Captioner.caption_with_facts`) for one process.

    Reader `rank * num_workers + worker` reads every `readers`-th parquet file, in an order reshuffled each epoch,
    through an example shuffle buffer of `shuffle_buffer` undecoded rows.
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
        if not files:
            raise ValueError("No data files")
        self.files, self.split, self.token = list(files), split, token
        self.image_processor, self.tokenizer, self.batch_size = image_processor, tokenizer, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.shuffle_buffer = max(1, shuffle_buffer)
        self.captioner = captioner or Captioner(seed=seed)
        self.augment = augment
        self.filters = {column: {int(v) for v in values} for column, values in (filters or {}).items()}
        self.keep_probability = {c: dict(p) for c, p in (keep_probability or {}).items()}
        self.drop_last = drop_last
        self.epoch = 0
        self._consumed: dict[int, dict] = {}
        self._resume: dict[int, dict] = {}

    # ------------------------------------------------------------------------------------------ epochs, state
    def set_epoch(self, epoch: int) -> None:
        """Start `epoch`: a new file order, shuffle and captions. Call before creating the DataLoader iterator."""
        if epoch != self.epoch:
            self._consumed, self._resume = {}, {}
        self.epoch = epoch

    def record_batch(self, batch: Mapping[str, Any]) -> None:
        """Note that `batch` was consumed (call for every batch the trainer used)."""
        worker, state = batch["stream_state"]
        self._consumed[worker] = state

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "worker_states": dict(self._consumed)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self._consumed = {int(k): v for k, v in state["worker_states"].items()}
        self._resume = dict(self._consumed)

    # ------------------------------------------------------------------------------------------- iteration
    def reader_files(self, reader: int, readers: int) -> list[str]:
        """The files of one reader, in this epoch's order."""
        if len(self.files) < readers:
            raise ValueError(
                f"{len(self.files)} data files cannot feed {readers} readers ({self.world_size} processes x "
                f"{readers // self.world_size} workers): use fewer workers or write more shards"
            )
        files = self.files[reader::readers]
        random.Random(stable_seed(self.seed, self.epoch, reader, "files")).shuffle(files)
        return files

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        reader = self.rank * workers + worker
        dataset = open_parquet_stream(self.reader_files(reader, self.world_size * workers), self.split, self.token)
        if worker in self._resume:
            dataset.load_state_dict(self._resume[worker])
        rows = ({key: values[0] for key, values in batch.items()} for batch in dataset.iter(batch_size=1))
        items, skipped = [], 0
        for example in self._shuffled(rows, reader):
            item = self._example_to_item(example)
            if item is None:
                skipped += 1
                continue
            items.append(item)
            if len(items) == self.batch_size:
                yield self._collate(items, (worker, dataset.state_dict()))
                items = []
        if items and not self.drop_last:
            yield self._collate(items, (worker, dataset.state_dict()))
        if skipped:
            logger.warning(
                "worker %d skipped %d unreadable or rejected examples in epoch %d", worker, skipped, self.epoch
            )

    def _shuffled(self, rows: Iterator[dict[str, Any]], reader: int) -> Iterator[dict[str, Any]]:
        """Reservoir-style shuffle buffer. Rows held in it when a checkpoint is taken are skipped on resume."""
        rng = random.Random(stable_seed(self.seed, self.epoch, reader, "buffer"))
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

    def _example_to_item(self, example: dict[str, Any]) -> dict[str, Any] | None:
        record = {k: v for k, v in example.items() if k != "image"}
        key = record.get("file_md5") or record.get("file_name")
        rng = random.Random(stable_seed(key, self.epoch, self.seed, "sample"))
        for column, allowed in self.filters.items():
            if int(record[column]) not in allowed:
                return None
        for column, keep in self.keep_probability.items():
            if rng.random() >= keep.get(int(record[column]), 1.0):
                return None
        # with augmentation the crop is resized, padded and warped in one resampling (FundusAugment.place)
        load = self.image_processor.prepare_image if self.augment is None else self.image_processor.load_and_crop
        try:
            image = load(example["image"])
        except (ValueError, OSError) as error:
            logger.warning("skipping %s: %s", key, error)
            return None
        if self.augment is not None:
            image, flipped = self.augment.place(image, self.image_processor.placement(*image.size), rng)
            if flipped and record.get("eyes_side") in ("left", "right"):
                record["eyes_side"] = "right" if record["eyes_side"] == "left" else "left"
        caption, caption_facts = self.captioner.caption_with_facts(record, self.epoch)
        return {
            "image": image,
            "caption": caption,
            "caption_facts": caption_facts,
            "labels": [int(record.get(column) or 0) for column in CAPTIONED_COLUMNS],
        }

    def _collate(self, items: list[dict[str, Any]], stream_state: tuple[int, dict]) -> dict[str, Any]:
        captions = [item["caption"] for item in items]
        batch = dict(self.tokenizer(captions, padding=True, truncation=True, return_tensors="pt"))
        batch["pixel_values"] = uint8_pixels([item["image"] for item in items])
        batch["labels"] = torch.tensor([item["labels"] for item in items], dtype=torch.long)
        batch["caption_facts"] = torch.tensor([item["caption_facts"] for item in items], dtype=torch.long)
        batch["captions"] = captions
        batch["stream_state"] = stream_state
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


def make_dataloader(
    stream: FundusStream, num_workers: int = 0, pin_memory: bool = False
) -> torch.utils.data.DataLoader:
    """A DataLoader over already-batched stream output (workers decode, augment and tokenize). `pin_memory` (for a
    CUDA device) lets the trainer copy batches to the device without blocking."""
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    return torch.utils.data.DataLoader(
        stream,
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=False,
        prefetch_factor=2 if num_workers else None,
        pin_memory=pin_memory,
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
