"""SynFundus-1M release folder (images + metadata CSV/TSV) -> sharded parquet `datasets` folder.

Every row is validated: the image must exist inside the release folder, decode completely, match its MD5 when one
is given, and its labels must be in range (`visionclip.schema`). Rejected rows are reported with reasons, never
dropped silently. Shards are written by worker processes, each atomically, with a sidecar report; re-running
skips shards whose file and report are both complete, so an interrupted conversion resumes where it stopped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from image_processing_visionclip import DEFAULT_MAX_IMAGE_BYTES, load_fundus_image

from . import shards
from .locking import folder_lock
from .schema import COLUMNS, COLUMNS_BY_NAME, LABEL_COLUMNS, as_int, datasets_features

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
REPORTS_DIR = "reports"
REJECTED_FILE = "rejected.csv"


@dataclass
class ReleaseMetadata:
    """The metadata table of a release: its file, columns, and which schema columns are missing or extra."""

    path: Path
    delimiter: str
    columns: list[str]
    missing_optional: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    def rows(self) -> Iterator[dict[str, str]]:
        with self.path.open(newline="", encoding="utf-8-sig") as handle:
            yield from csv.DictReader(handle, delimiter=self.delimiter)


def find_metadata(release: Path, metadata: Path | None = None) -> ReleaseMetadata:
    """Locate and check the metadata CSV/TSV: the given file, or the single one at the release root."""
    if not release.is_dir():
        raise FileNotFoundError(f"Release folder not found: {release}")
    if metadata is None:
        candidates = sorted(p for p in release.iterdir() if p.suffix.lower() in (".csv", ".tsv", ".txt"))
        if len(candidates) != 1:
            raise ValueError(
                f"{release}: expected one metadata .csv/.tsv at the top level, found {[p.name for p in candidates]}; "
                "pass --metadata"
            )
        metadata = candidates[0]
    if not metadata.is_file():
        raise FileNotFoundError(f"Metadata file not found: {metadata}")
    with metadata.open(newline="", encoding="utf-8-sig") as handle:
        header = handle.readline()
    delimiter = "\t" if header.count("\t") > header.count(",") else ","
    columns = [c.strip() for c in next(csv.reader([header], delimiter=delimiter))]
    required = [c.name for c in COLUMNS if c.required and c.name not in columns]
    if required:
        raise ValueError(f"{metadata}: required columns missing: {required} (found {columns})")
    missing_optional = [c.name for c in COLUMNS if not c.required and c.name not in columns]
    extra = [c for c in columns if c not in COLUMNS_BY_NAME]
    return ReleaseMetadata(metadata, delimiter, columns, missing_optional, extra)


def index_images(release: Path) -> dict[str, list[str]]:
    """Image file name -> relative paths under the release folder (one walk, so lookups are cheap)."""
    found: dict[str, list[str]] = {}
    for folder, _, files in os.walk(release):
        for name in files:
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.setdefault(name, []).append(os.path.relpath(os.path.join(folder, name), release))
    return found


def _inside_release(release: Path, file_name: str, path: Path) -> tuple[Path | None, str | None]:
    """`path` if it resolves inside the (resolved) release folder; symlinks out of it are a rejection reason."""
    target = Path(os.path.realpath(path))
    if not target.is_relative_to(release):
        return None, f"image {file_name!r} is a symlink to {target}, outside the release folder"
    return path, None


def locate_image(release: Path, file_name: str, index: dict[str, list[str]]) -> tuple[Path | None, str | None]:
    """The image of a row, or why there is none (missing, ambiguous, or outside the release folder, by its path or
    through a symlink). `release` must be resolved."""
    if not file_name:
        return None, "file_name is empty"
    if os.path.isabs(file_name) or ".." in Path(file_name).parts:
        return None, f"file_name {file_name!r} points outside the release folder"
    direct = release / file_name
    if direct.is_file():
        return _inside_release(release, file_name, direct)
    matches = index.get(Path(file_name).name, [])
    if len(matches) == 1:
        return _inside_release(release, file_name, release / matches[0])
    if len(matches) > 1:
        return None, f"file_name {file_name!r} matches {len(matches)} files: {matches[:3]}"
    return None, f"image file {file_name!r} not found in the release folder"


def clean_record(raw: dict[str, str], extra: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Typed record (ints for labels, strings otherwise) and the problems found in it."""
    record: dict[str, Any] = {}
    for column in COLUMNS:
        value = raw.get(column.name)
        value = value.strip() if isinstance(value, str) else value
        if value in ("", None):
            record[column.name] = None if column.name in LABEL_COLUMNS or column.required else ""
        elif column.name in LABEL_COLUMNS:
            integer = as_int(value)
            record[column.name] = integer if integer is not None else value
        else:
            record[column.name] = value
    problems = [p for c in COLUMNS if (p := c.validate(record[c.name]))]
    for name in extra:
        record[name] = raw.get(name) or ""
    return record, problems


@dataclass
class ShardTask:
    spec: shards.ShardSpec
    rows: list[tuple[int, dict[str, str]]]  # (row number in the metadata file, raw row)
    release: str
    extra: list[str]
    max_image_bytes: int
    duplicates: set[int] = field(default_factory=set)


def convert_shard(task: ShardTask, out_dir: str, image_index: dict[str, list[str]]) -> dict[str, Any]:
    """Validate and write one shard; returns its report (also saved beside the shard)."""
    release = Path(task.release)
    good, rejected, counts = [], [], Counter()
    for row_number, raw in task.rows:
        record, problems = clean_record(raw, task.extra)
        if row_number in task.duplicates:
            problems.append(f"duplicate file_name {record.get('file_name')!r} (an earlier row has it)")
        path, reason = locate_image(release, record.get("file_name") or "", image_index)
        data = None
        if reason:
            problems.append(reason)
        else:
            data = path.read_bytes()
            md5 = record.get("file_md5")
            if md5 and hashlib.md5(data).hexdigest() != md5.lower():
                problems.append(f"md5 mismatch: metadata {md5}, file {hashlib.md5(data).hexdigest()}")
            try:
                load_fundus_image(data, task.max_image_bytes)
            except (ValueError, OSError) as error:
                problems.append(f"unreadable image: {error}")
        if problems:
            rejected.append({"row": row_number, "file_name": record.get("file_name"), "reasons": problems})
            continue
        good.append({"image": {"bytes": data, "path": record["file_name"]}, **record})
        counts.update({f"{c}={record[c]}": 1 for c in LABEL_COLUMNS if record.get(c) is not None})
    schema = datasets_features(extra_columns={name: "string" for name in task.extra}).arrow_schema
    shard_file = shards.shard_path(out_dir, task.spec)
    shards.write_shard(shard_file, iter(good), schema, len(good))
    report = {"shard": task.spec.filename, "rows": len(good), "rejected": rejected, "counts": dict(counts)}
    shards.atomic_write_bytes(_report_path(out_dir, task.spec), json.dumps(report).encode())
    return report


def _report_path(out_dir: str | Path, spec: shards.ShardSpec) -> Path:
    return Path(out_dir) / REPORTS_DIR / (spec.filename + ".json")


def finished_report(out_dir: str | Path, spec: shards.ShardSpec) -> dict[str, Any] | None:
    """The saved report of a shard whose parquet file is complete, else None (the shard must be redone)."""
    path = _report_path(out_dir, spec)
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    return report if shards.is_complete(shards.shard_path(out_dir, spec), report["rows"]) else None


_WORKER_STATE: dict[str, Any] = {}


def _init_worker(out_dir: str, image_index: dict[str, list[str]]) -> None:
    _WORKER_STATE.update(out_dir=out_dir, image_index=image_index)


def _run_task(task: ShardTask) -> dict[str, Any]:
    return convert_shard(task, _WORKER_STATE["out_dir"], _WORKER_STATE["image_index"])


def shard_tasks(
    metadata: ReleaseMetadata,
    release: Path,
    specs: list[shards.ShardSpec],
    max_image_bytes: int,
    skip: set[str],
    duplicates: set[int],
) -> Iterator[ShardTask]:
    """Stream the metadata once, cutting it into the tasks of the shards not in `skip`."""
    rows = enumerate(metadata.rows(), start=2)  # row 1 is the header
    for spec in specs:
        chunk = [next(rows) for _ in range(spec.num_rows)]
        if spec.filename not in skip:
            numbers = {number for number, _ in chunk} & duplicates
            yield ShardTask(spec, chunk, str(release), metadata.extra, max_image_bytes, numbers)


def run_pool(
    tasks: Iterator[ShardTask], out_dir: Path, image_index: dict[str, list[str]], workers: int, on_done
) -> None:
    """Convert shard tasks in `workers` processes (in this process when 1)."""
    if workers <= 1:
        _init_worker(str(out_dir), image_index)
        for task in tasks:
            on_done(_run_task(task))
        return
    context = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(str(out_dir), image_index)) as pool:
        for report in pool.imap_unordered(_run_task, tasks):
            on_done(report)


def write_rejected(out_dir: Path, reports: list[dict[str, Any]]) -> int:
    """Merge the shards' rejected rows into one CSV (sorted by row number); returns how many there are."""
    rejected = sorted((r for report in reports for r in report["rejected"]), key=lambda r: r["row"])
    lines = [["row", "file_name", "reasons"]] + [[r["row"], r["file_name"], "; ".join(r["reasons"])] for r in rejected]
    buffer = io.StringIO()
    csv.writer(buffer).writerows(lines)
    shards.atomic_write_bytes(out_dir / REJECTED_FILE, buffer.getvalue().encode())
    return len(rejected)


def scan_metadata(metadata: ReleaseMetadata) -> tuple[int, set[int]]:
    """Number of rows, and the row numbers whose file_name already appeared in an earlier row."""
    seen, duplicates, count = set(), set(), 0
    for count, row in enumerate(metadata.rows(), start=1):
        name = (row.get("file_name") or "").strip()
        if name in seen:
            duplicates.add(count + 1)
        seen.add(name)
    return count, duplicates


@dataclass
class ConversionSummary:
    rows: int
    converted: int
    rejected: int
    shards_written: int
    shards_skipped: int
    out_dir: Path
    counts: Counter


def convert_release(
    release: str | Path,
    out_dir: str | Path,
    *,
    metadata: str | Path | None = None,
    rows_per_shard: int = 1000,
    workers: int = 1,
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    progress=None,
) -> ConversionSummary:
    """Convert (or finish converting) a release folder; `progress(rows)` is called as shards finish.

    Holds the output folder's lock: a second conversion into the same folder waits, naming this one, then finds
    the shards complete."""
    release, out_dir = Path(release).resolve(), Path(out_dir)
    if rows_per_shard < 1 or workers < 1:
        raise ValueError(f"rows_per_shard and workers must be positive, got {rows_per_shard} and {workers}")
    table = find_metadata(release, Path(metadata) if metadata else None)
    num_rows, duplicates = scan_metadata(table)
    if num_rows == 0:
        raise ValueError(f"{table.path}: no rows")
    with folder_lock(out_dir, "converting a SynFundus release"):
        shards.check_manifest(
            out_dir,
            {
                "source": "synfundus-release",
                "metadata": table.path.name,
                "rows": num_rows,
                "rows_per_shard": rows_per_shard,
                "extra_columns": table.extra,
            },
        )
        shards.remove_stale_temporaries(out_dir)
        specs = shards.plan_shards("train", num_rows, rows_per_shard)
        reports = {spec.filename: r for spec in specs if (r := finished_report(out_dir, spec)) is not None}
        skipped = len(reports)
        if progress:
            progress(sum(spec.num_rows for spec in specs if spec.filename in reports))

        def done(report: dict[str, Any]) -> None:
            reports[report["shard"]] = report
            if progress:
                progress(report["rows"] + len(report["rejected"]))

        tasks = shard_tasks(table, release, specs, max_image_bytes, set(reports), duplicates)
        run_pool(tasks, out_dir, index_images(release), workers, done)
        ordered = [reports[spec.filename] for spec in specs]
        counts = Counter()
        for report in ordered:
            counts.update(report["counts"])
        rejected = write_rejected(out_dir, ordered)
        return ConversionSummary(
            num_rows, sum(r["rows"] for r in ordered), rejected, len(specs) - skipped, skipped, out_dir, counts
        )
