"""Which rows each reader of the training stream reads, and reading them from a saved position.

A reader is one DataLoader worker of one process: reader ``rank * workers + worker`` of ``world_size * workers``.
Each reads a disjoint list of parts, so every row is read exactly once per epoch across all readers:

* at least as many parquet files as readers: reader ``r`` reads whole files ``r, r + readers, ...``;
* fewer files than readers: the files' row groups (the generator and converter write 64 rows per group) are dealt
  out the same way, so each reader reads whole row groups;
* fewer row groups than readers: refused, naming the numbers.

A position ``(epoch, part, row)`` says that a reader has read the first ``row`` rows of part number ``part`` of
that epoch's (shuffled) part order, and everything before it; reading resumes there without rereading skipped row
groups.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow.parquet as pq
from datasets import DownloadConfig
from datasets.utils.file_utils import xopen

ROWS_PER_READ = 16  # rows decoded from parquet at a time (their images stay encoded)


@dataclass(frozen=True)
class ReaderPart:
    """A parquet file, or only the given row groups of it."""

    file: str
    row_groups: tuple[int, ...] | None = None


@dataclass(frozen=True)
class StreamPosition:
    """A reader's place in the stream: `row` rows of part `part` of epoch `epoch`'s part order have been read."""

    epoch: int
    part: int = 0
    row: int = 0

    @property
    def at_epoch_start(self) -> bool:
        return self.part == 0 and self.row == 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> StreamPosition:
        return cls(int(state["epoch"]), int(state["part"]), int(state["row"]))


@contextmanager
def open_parquet(file: str, token: str | bool | None = None) -> Iterator[pq.ParquetFile]:
    """A local path or a remote (``hf://``, ``https://``) parquet file, open for the duration of the block."""
    with xopen(file, "rb", download_config=DownloadConfig(token=token)) as handle:
        yield pq.ParquetFile(handle)


def plan_reader_parts(
    files: list[str], readers: int, token: str | bool | None = None, layout: str = ""
) -> list[list[ReaderPart]]:
    """The parts of each of `readers` readers (see the module docstring). `layout` says in words how the readers
    come about (for the refusal message)."""
    if len(files) >= readers:
        return [[ReaderPart(file) for file in files[reader::readers]] for reader in range(readers)]
    groups = []
    for file in files:
        with open_parquet(file, token) as parquet:
            groups += [ReaderPart(file, (group,)) for group in range(parquet.num_row_groups)]
    if len(groups) < readers:
        raise ValueError(
            f"{len(files)} data file(s) with {len(groups)} parquet row group(s) in all cannot feed {readers} "
            f"readers{f' ({layout})' if layout else ''}: every reader needs at least one row group; use fewer "
            "--num-workers or processes, or write the data in more shards or smaller row groups"
        )
    return [groups[reader::readers] for reader in range(readers)]


def read_part(part: ReaderPart, skip: int = 0, token: str | bool | None = None) -> Iterator[dict[str, Any]]:
    """The rows of `part` after its first `skip`, as dicts; images stay encoded (``{"bytes", "path"}``)."""
    with open_parquet(part.file, token) as parquet:
        groups = list(range(parquet.num_row_groups)) if part.row_groups is None else list(part.row_groups)
        while groups and skip >= parquet.metadata.row_group(groups[0]).num_rows:
            skip -= parquet.metadata.row_group(groups.pop(0)).num_rows
        if not groups:
            return
        for batch in parquet.iter_batches(batch_size=ROWS_PER_READ, row_groups=groups):
            rows = batch.to_pylist()
            dropped = min(skip, len(rows))
            skip -= dropped
            yield from rows[dropped:]
