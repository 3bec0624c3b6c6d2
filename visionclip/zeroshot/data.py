"""Evaluation datasets: an image folder (a class per subfolder), a CSV (`file,label[,split,fold]`, paths relative
to the CSV), a `datasets` dataset (Hub id or local folder), or held-out images from the synthetic generator."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..synthetic.labels import resolve_prevalence
from ..synthetic.writer import SampleMaker
from .tasks import ZeroShotTask

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


@dataclass
class EvalItem:
    """One image to score: where it comes from, its class index, and its optional split, fold, group (the
    patient or eye it shows: images of one group are not independent) and unit (what the label belongs to, where a
    label covers several images, such as an eye's DR grade and its four fields)."""

    id: str
    image: Any  # a path, encoded bytes / `datasets` image dict, or a PIL image
    label: int
    split: str | None = None
    fold: int | None = None
    group: str | None = None
    unit: str | None = None


@dataclass
class EvalDataset:
    name: str
    source: str
    task: ZeroShotTask
    items: list[EvalItem]

    def __post_init__(self) -> None:
        if not self.items:
            raise ValueError(f"Dataset {self.name!r} ({self.source}) holds no images")

    def subset(self, split: str | None) -> list[EvalItem]:
        """Items of `split`; every item when the dataset has no split column or `split` is None."""
        if split is None or all(item.split is None for item in self.items):
            return list(self.items)
        return [item for item in self.items if item.split == split]

    @property
    def has_folds(self) -> bool:
        return all(item.fold is not None for item in self.items)

    @property
    def has_groups(self) -> bool:
        return all(item.group is not None for item in self.items)


def unit_columns_of(columns: Mapping[str, Any], source: object, available: list[str]) -> tuple[str, ...]:
    """The unit columns asked for (none by default), each checked to be among a source's `available` columns."""
    unit_columns = tuple(columns.get("unit", ()))
    absent = [column for column in unit_columns if column not in available]
    if absent:
        raise ValueError(f"{source}: no unit column(s) {absent} (columns: {available})")
    return unit_columns


def unit_name(row: Mapping[str, Any], columns: tuple[str, ...], where: str) -> str | None:
    """The unit a row's label belongs to: its `columns` values joined by "/" (None without unit columns)."""
    if not columns:
        return None
    values = ["" if row.get(column) is None else str(row[column]).strip() for column in columns]
    if not all(values):
        missing = [column for column, value in zip(columns, values, strict=True) if not value]
        raise ValueError(f"{where}no value in the unit column(s) {missing}")
    return "/".join(values)


def from_folder(root: Path, task: ZeroShotTask, name: str) -> EvalDataset:
    """`root/<label>/**/<image>`: one subfolder per class label of the task."""
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    unknown = [f.name for f in folders if f.name not in task.labels]
    if unknown:
        raise ValueError(f"{root}: subfolders {unknown} are not classes of task {task.name!r} {list(task.labels)}")
    items = [
        EvalItem(str(path.relative_to(root)), path, task.index(folder.name))
        for folder in folders
        for path in sorted(folder.rglob("*"))
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    return EvalDataset(name, str(root), task, items)


def from_csv(path: Path, task: ZeroShotTask, name: str, columns: Mapping[str, str]) -> EvalDataset:
    """Rows of `file,label[,split,fold,group]` (column names configurable); image paths are relative to the CSV."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for role in ("file", "label"):
            if columns[role] not in header:
                raise ValueError(f"{path}: no {role} column {columns[role]!r} (columns: {header})")
        unit_columns = unit_columns_of(columns, path, header)
        rows = list(reader)
    items = []
    for number, row in enumerate(rows, start=2):
        file = (row[columns["file"]] or "").strip()
        if not file:
            raise ValueError(f"{path}, row {number}: empty {columns['file']!r}")
        split = (row.get(columns["split"]) or "").strip() or None
        fold = (row.get(columns["fold"]) or "").strip()
        group = (row.get(columns.get("group", "")) or "").strip() or None
        items.append(
            EvalItem(
                file,
                path.parent / file,
                task.index(row[columns["label"]], f"{path}, row {number}: "),
                split,
                int(fold) if fold else None,
                group,
                unit_name(row, unit_columns, f"{path}, row {number}: "),
            )
        )
    return EvalDataset(name, str(path), task, items)


def from_datasets(source: str, task: ZeroShotTask, name: str, columns: Mapping[str, str], split: str) -> EvalDataset:
    """A `datasets` dataset from the Hub or a local folder; images stay encoded until they are scored."""
    import datasets

    dataset = datasets.load_dataset(source, split=split)
    for role in ("image", "label"):
        if columns[role] not in dataset.column_names:
            raise ValueError(f"{source}: no {role} column {columns[role]!r} (columns: {dataset.column_names})")
    unit_columns = unit_columns_of(columns, source, dataset.column_names)
    if isinstance(dataset.features[columns["image"]], datasets.Image):
        dataset = dataset.cast_column(columns["image"], datasets.Image(decode=False))
    label_feature = dataset.features[columns["label"]]
    names = getattr(label_feature, "names", None)
    items = []
    for index, row in enumerate(dataset):
        label = row[columns["label"]]
        label = names[label] if names is not None else label
        fold, group = row.get(columns["fold"]), row.get(columns.get("group", ""))
        items.append(
            EvalItem(
                str(row.get("file_name") or index),
                row[columns["image"]],
                task.index(label, f"{source}[{index}]: "),
                row.get(columns["split"]),
                int(fold) if fold is not None else None,
                str(group) if group is not None else None,
                unit_name(row, unit_columns, f"{source}[{index}]: "),
            )
        )
    return EvalDataset(name, source, task, items)


def from_synthetic(
    task: ZeroShotTask,
    name: str,
    count: int,
    seed: int = 1,
    image_size: int = 512,
) -> EvalDataset:
    """`count` generated held-out images whose labels match exactly one of the task's `synthetic` conditions."""
    maker = SampleMaker(image_size, seed, tuple(sorted(resolve_prevalence().items())))
    items, index = [], 0
    while len(items) < count and index < count * 50:
        sample = maker.sample("evaluation", index)
        label = task.record_class(sample.record)
        if label is not None:
            items.append(EvalItem(sample.record["file_name"], sample.png, label))
        index += 1
    return EvalDataset(name, f"synthetic generator (seed {seed}, {image_size} px)", task, items)


def load_eval_dataset(
    source: str,
    task: ZeroShotTask,
    name: str,
    columns: Mapping[str, str],
    hf_split: str = "test",
    synthetic_count: int = 300,
) -> EvalDataset:
    """Dispatch on the source: `synthetic`, a CSV file, a class-per-folder directory, or a `datasets` source."""
    path = Path(source)
    has_no_columns = source == "synthetic" or (path.is_dir() and not _is_datasets_folder(path))
    if columns.get("unit") and has_no_columns:
        raise ValueError(
            f"{source}: unit columns {list(columns['unit'])} need a CSV or `datasets` source; generated images and a "
            "folder per class have no columns"
        )
    if source == "synthetic":
        if not task.synthetic_conditions:
            raise ValueError(f"Task {task.name!r} defines no 'synthetic' label conditions")
        return from_synthetic(task, name, synthetic_count)
    if path.suffix.lower() == ".csv":
        if not path.is_file():
            raise FileNotFoundError(f"CSV file not found: {path}")
        return from_csv(path, task, name, columns)
    if has_no_columns:
        return from_folder(path, task, name)
    if path.exists() or source.count("/") == 1:
        return from_datasets(source, task, name, columns, hf_split)
    raise FileNotFoundError(f"Dataset source {source!r} is not a CSV file, folder or Hub dataset id")


def _is_datasets_folder(path: Path) -> bool:
    return (path / "data").is_dir() or any(path.glob("*.parquet"))
