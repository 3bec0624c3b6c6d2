"""Sharded parquet output in the Hugging Face `datasets` layout, written atomically and resumably.

A dataset folder holds ``data/<split>-<i>-of-<n>.parquet`` files (``load_dataset("parquet", data_files=...)``
and ``load_dataset(folder)`` both read it, streaming or not). Rules that make generation safe to interrupt:

* a shard is written to a hidden temporary file beside its final name and renamed into place only when complete,
  so a file with a final name is always a complete shard;
* a shard whose final file exists with the expected number of rows is skipped, so re-running after a crash
  finishes only the missing shards and never rewrites complete ones;
* a manifest (``generation.json``) records what the folder was generated with; resuming with a different
  configuration is refused instead of mixing two datasets;
* writers hold the folder's lock (`visionclip.locking.folder_lock`) while they write, so a temporary file found
  under the lock was left by a writer that died: :func:`remove_stale_temporaries` and :func:`write_shards` must
  only be called under it (a second writer waits for the first instead of deleting its temporaries).

Rows are produced by a picklable callable ``make_row(spec, index) -> dict``; with ``workers > 1`` rows are made in
a process pool and written in order by the parent, one shard at a time. The pool makes the rows of every missing
shard as one stream, a bounded number of rows ahead of the writer: every worker stays busy across shard boundaries
(with shards of a few rows, a pool fed one shard at a time keeps only one or two workers busy), memory does not
grow with the number of rows, and shard contents do not depend on the number of workers.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DATA_DIR = "data"
MANIFEST = "generation.json"
TEMP_PREFIX = ".tmp-"
ROW_GROUP_SIZE = 64
ROWS_AHEAD_PER_WORKER = 2  # rows made ahead of the writer: enough that no worker waits for the next task


@dataclass(frozen=True)
class ShardSpec:
    """One shard of a split: rows ``start`` .. ``stop - 1`` of the split go into file ``index`` of ``count``."""

    split: str
    index: int
    count: int
    start: int
    stop: int

    @property
    def num_rows(self) -> int:
        """Rows in this shard."""
        return self.stop - self.start

    @property
    def filename(self) -> str:
        """File name in the `datasets` convention, e.g. ``train-00003-of-00020.parquet``."""
        return f"{self.split}-{self.index:05d}-of-{self.count:05d}.parquet"


def plan_shards(split: str, num_rows: int, rows_per_shard: int) -> list[ShardSpec]:
    """Cut ``num_rows`` rows of a split into consecutive shards of at most ``rows_per_shard`` rows."""
    if num_rows <= 0 or rows_per_shard <= 0:
        raise ValueError(f"need positive num_rows and rows_per_shard, got {num_rows} and {rows_per_shard}")
    count = -(-num_rows // rows_per_shard)
    return [
        ShardSpec(split, i, count, i * rows_per_shard, min((i + 1) * rows_per_shard, num_rows)) for i in range(count)
    ]


def shard_path(out_dir: str | os.PathLike, spec: ShardSpec) -> Path:
    """Final path of a shard: ``<out_dir>/data/<split>-<i>-of-<n>.parquet``."""
    return Path(out_dir) / DATA_DIR / spec.filename


def is_complete(path: str | os.PathLike, num_rows: int) -> bool:
    """Whether ``path`` is a readable parquet file with exactly ``num_rows`` rows."""
    try:
        return pq.ParquetFile(path).metadata.num_rows == num_rows
    except (OSError, pa.ArrowException):
        return False


def remove_stale_temporaries(out_dir: str | os.PathLike) -> list[Path]:
    """Delete temporary files left by an interrupted run; returns what was removed. Call only while holding the
    folder's lock, or a live writer's temporaries go too."""
    folder = Path(out_dir) / DATA_DIR
    stale = sorted(folder.glob(TEMP_PREFIX + "*")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def check_manifest(out_dir: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
    """Write the manifest on first use; raise ValueError if the folder was generated with another one."""
    path = Path(out_dir) / MANIFEST
    wanted = json.loads(json.dumps(manifest, sort_keys=True))
    if path.exists():
        found = json.loads(path.read_text())
        if found != wanted:
            changed = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
            raise ValueError(
                f"{out_dir} already holds a dataset generated with a different configuration "
                f"(differs in: {', '.join(changed)}); use another output folder or delete it"
            )
        return
    atomic_write_bytes(path, (json.dumps(wanted, indent=2, sort_keys=True) + "\n").encode())


def fsync(path: str | os.PathLike) -> None:
    """Flush a file's or a folder's entries to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def replace_folder(temporary: Path, final: Path) -> None:
    """Make the fully written folder `temporary` the folder `final`: every file flushed, the old `final` removed,
    one rename, the parent flushed."""
    for path in sorted(temporary.rglob("*"), reverse=True):
        fsync(path)
    fsync(temporary)
    if final.exists():
        shutil.rmtree(final)
    temporary.rename(final)
    fsync(final.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{path.name}")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_shard(path: str | os.PathLike, rows: Iterator[Mapping[str, Any]], schema: pa.Schema, num_rows: int) -> None:
    """Stream ``num_rows`` rows into a parquet file (row groups of :data:`ROW_GROUP_SIZE`), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{path.name}")
    written = 0
    try:
        with pq.ParquetWriter(temp, schema) as writer:
            batch: list[Mapping[str, Any]] = []
            for row in rows:
                batch.append(row)
                if len(batch) == ROW_GROUP_SIZE:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    written += len(batch)
                    batch = []
            if batch:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                written += len(batch)
        if written != num_rows:
            raise RuntimeError(f"{path.name}: expected {num_rows} rows, got {written}")
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


@dataclass
class ShardReport:
    written: list[str]
    skipped: list[str]


def _call(task: tuple[Callable[[ShardSpec, int], Mapping[str, Any]], ShardSpec, int]) -> Mapping[str, Any]:
    make_row, spec, index = task
    return make_row(spec, index)


def write_shards(
    out_dir: str | os.PathLike,
    specs: list[ShardSpec],
    make_row: Callable[[ShardSpec, int], Mapping[str, Any]],
    schema: pa.Schema,
    *,
    workers: int = 1,
    on_row: Callable[[], None] | None = None,
    on_skip: Callable[[ShardSpec], None] | None = None,
) -> ShardReport:
    """Write every missing shard of ``specs`` under ``out_dir/data``; complete shards are left untouched. The caller
    holds ``folder_lock(out_dir, ...)``.

    ``make_row(spec, index)`` builds the row for global index ``index`` of ``spec.split``; it must be picklable
    when ``workers > 1``. ``on_row`` is called after each written row, ``on_skip`` for each skipped shard.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    remove_stale_temporaries(out_dir)
    report = ShardReport([], [])
    todo = []
    for spec in specs:
        if is_complete(shard_path(out_dir, spec), spec.num_rows):
            report.skipped.append(spec.filename)
            if on_skip is not None:
                on_skip(spec)
        else:
            todo.append(spec)
    pool = multiprocessing.get_context().Pool(workers) if workers > 1 and todo else None
    try:
        tasks = ((make_row, spec, index) for spec in todo for index in range(spec.start, spec.stop))
        rows = _in_order(pool, tasks, workers * ROWS_AHEAD_PER_WORKER) if pool is not None else map(_call, tasks)
        for spec in todo:
            shard_rows = itertools.islice(rows, spec.num_rows)
            write_shard(shard_path(out_dir, spec), _counted(shard_rows, on_row), schema, spec.num_rows)
            report.written.append(spec.filename)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return report


def _in_order(pool, tasks: Iterable[tuple], ahead: int) -> Iterator[Mapping[str, Any]]:
    """The rows of `tasks`, made in `pool` and yielded in order, with at most `ahead` rows made or being made and
    not yet yielded (`Pool.imap` would queue every task at once and keep every finished row the writer has not
    taken)."""
    pending: deque = deque()
    for task in tasks:
        pending.append(pool.apply_async(_call, (task,)))
        if len(pending) >= ahead:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _counted(rows: Iterator[Mapping[str, Any]], on_row: Callable[[], None] | None) -> Iterator[Mapping[str, Any]]:
    for row in rows:
        yield row
        if on_row is not None:
            on_row()
