"""The middle stages of the training stream: one undecoded row to one training example (filter and balance, decode
and crop, augment, caption), and examples to a batch (tokenise, tensors).

Every random choice for a row (balancing, augmentation) comes from a generator seeded by the row's file and the
epoch, so a row is treated the same whichever reader reads it and wherever a run resumed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import torch

from .augment import FundusAugment
from .captions import Captioner
from .pixels import ImagePreparer, uint8_pixels
from .schema import CAPTIONED_COLUMNS, LABEL_VECTOR_COLUMNS, MISSING_LABEL
from .seeding import stable_seed
from .stream_parts import StreamPosition
from .stream_report import EpochTally


def label_vector(record: dict[str, Any]) -> list[int]:
    """The record's `LABEL_VECTOR_COLUMNS`: a required column's empty value reads 0, an optional one's (a
    SynFundus-1M row has no `media_haze`) reads `MISSING_LABEL`."""
    values = []
    for column in LABEL_VECTOR_COLUMNS:
        value = record.get(column)
        if column in CAPTIONED_COLUMNS:
            values.append(int(value or 0))
        else:
            values.append(MISSING_LABEL if value is None or value != value else int(value))
    return values


class ExampleTransform:
    """One row -> `{"image", "caption", "caption_facts", "labels"}`, or None for a row the filters or balancing
    leave out or whose image cannot be read (counted in the epoch's `EpochTally`).

    `filters` keeps rows whose column holds one of the allowed values; `keep_probability` keeps a row with the
    probability given for its column's value (balanced sampling)."""

    def __init__(
        self,
        image_processor: ImagePreparer,
        *,
        seed: int = 0,
        captioner: Captioner | None = None,
        augment: FundusAugment | None = None,
        filters: Mapping[str, list[int]] | None = None,
        keep_probability: Mapping[str, Mapping[int, float]] | None = None,
    ):
        self.image_processor, self.seed = image_processor, seed
        self.captioner = captioner or Captioner(seed=seed)
        self.augment = augment
        self.filters = {column: {int(v) for v in values} for column, values in (filters or {}).items()}
        self.keep_probability = {c: dict(p) for c, p in (keep_probability or {}).items()}

    @property
    def balance_column(self) -> str | None:
        return next(iter(self.keep_probability), None)

    def __call__(self, row: dict[str, Any], epoch: int, tally: EpochTally) -> dict[str, Any] | None:
        record = {k: v for k, v in row.items() if k != "image"}
        key = record.get("file_md5") or record.get("file_name")
        rng = random.Random(stable_seed(key, epoch, self.seed, "sample"))
        tally.rows += 1
        if not self._kept(record, rng, tally):
            return None
        # with augmentation the crop is resized, padded and warped in one resampling (FundusAugment.place)
        load = self.image_processor.prepare_image if self.augment is None else self.image_processor.load_and_crop
        try:
            image = load(row["image"])
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
            "labels": label_vector(record),
        }

    def _kept(self, record: dict[str, Any], rng: random.Random, tally: EpochTally) -> bool:
        for column, allowed in self.filters.items():
            if tally.filtered(column, int(record[column]), allowed):
                return False
        for column, keep in self.keep_probability.items():
            if rng.random() >= keep.get(int(record[column]), 1.0):
                tally.balanced_out += 1
                return False
        return True


class Collator:
    """Examples -> a batch: tokenised `captions` (padded to the longest), uint8 `pixel_values`, `labels` and
    `caption_facts` tensors, and ``stream_state`` = {worker, epoch, part, row}, where the worker's reading stood."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def __call__(self, items: list[dict[str, Any]], worker: int, position: StreamPosition) -> dict[str, Any]:
        captions = [item["caption"] for item in items]
        batch = dict(self.tokenizer(captions, padding=True, truncation=True, return_tensors="pt"))
        batch["pixel_values"] = uint8_pixels([item["image"] for item in items])
        batch["labels"] = torch.tensor([item["labels"] for item in items], dtype=torch.long)
        batch["caption_facts"] = torch.tensor([item["caption_facts"] for item in items], dtype=torch.long)
        batch["captions"] = captions
        batch["stream_state"] = {"worker": worker, **position.to_dict()}
        return batch
