"""Writing generated samples: a sharded parquet `datasets` folder, a SynFundus-style release folder (PNG files
plus one metadata CSV), and contact sheets."""

from __future__ import annotations

import csv
import hashlib
import io
import multiprocessing
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .. import shards
from ..locking import folder_lock
from ..schema import COLUMN_NAMES, FINDING_COLUMNS, datasets_features
from .generator import FundusGenerator, SyntheticFundus, encode_jpeg

GENERATOR_VERSION = "2"
SPLIT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RELEASE_CSV = "metadata.csv"
RELEASE_IMAGES = "images"


def parse_splits(text: str) -> dict[str, int]:
    """Parse ``train=20000,validation=2000`` into an ordered {split: size} dict (sizes must be positive)."""
    splits: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, count = part.partition("=")
        name = name.strip()
        if not sep or not SPLIT_NAME.match(name):
            raise ValueError(f"bad split {part!r}: expected name=count with a name like train or validation")
        if name in splits:
            raise ValueError(f"split {name!r} given twice")
        try:
            splits[name] = int(count)
        except ValueError:
            raise ValueError(f"bad split size in {part!r}: not an integer") from None
        if splits[name] <= 0:
            raise ValueError(f"split {name!r} must have a positive number of images, got {splits[name]}")
    if not splits:
        raise ValueError("no split given")
    return splits


def split_seed(seed: int, split: str) -> int:
    """The seed a split is generated with: ``seed`` itself for ``train``, otherwise one derived from both, so
    held-out splits never repeat training images."""
    if split == "train":
        return seed
    return int(np.random.SeedSequence([seed, zlib.crc32(split.encode())]).generate_state(1, np.uint32)[0])


IMAGE_FORMATS = {"png": "png", "jpeg": "jpg"}  # format -> file extension


def file_name_for(split: str, index: int, image_format: str = "png") -> str:
    """``<index>.png`` for train (like the SynFundus release), ``<split>-<index>.png`` otherwise (``.jpg`` for
    JPEG)."""
    extension = IMAGE_FORMATS[image_format]
    return f"{index}.{extension}" if split == "train" else f"{split}-{index}.{extension}"


_GENERATORS: dict[tuple, FundusGenerator] = {}


@dataclass(frozen=True)
class SampleMaker:
    """Picklable recipe for making samples in any process (each process keeps its own generator).

    `image_format` "png" is lossless, like the SynFundus-1M release; "jpeg" (at `jpeg_quality`, no chroma
    subsampling) decodes about 6x faster, which matters when a small model trains on a CPU.
    """

    image_size: int
    seed: int
    prevalence: tuple[tuple[str, float], ...]
    png_compress_level: int = 1
    image_format: str = "png"
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {sorted(IMAGE_FORMATS)}, got {self.image_format!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be 1-100, got {self.jpeg_quality}")

    def settings(self) -> dict[str, Any]:
        """The encoding settings that change a dataset's bytes (PNG level only for PNG, for older manifests)."""
        if self.image_format == "png":
            return {"png_compress_level": self.png_compress_level}
        return {"image_format": self.image_format, "jpeg_quality": self.jpeg_quality}

    def generator(self, split: str) -> FundusGenerator:
        """This process's generator for ``split`` (created once)."""
        key = (self, split)
        if key not in _GENERATORS:
            _GENERATORS[key] = FundusGenerator(
                self.image_size,
                dict(self.prevalence),
                split_seed(self.seed, split),
                encode_png=self.image_format == "png",
                png_compress_level=self.png_compress_level,
            )
        return _GENERATORS[key]

    def sample(self, split: str, index: int) -> SyntheticFundus:
        """Sample ``index`` of ``split``, with the split's file name."""
        sample = self.generator(split).sample(index)
        sample.record["file_name"] = file_name_for(split, index, self.image_format)
        return sample

    def encoded(self, split: str, index: int) -> tuple[bytes, dict[str, Any]]:
        """(file bytes in `image_format`, record with the matching `file_md5`) of sample ``index`` of ``split``."""
        sample = self.sample(split, index)
        if self.image_format == "png":
            return sample.png, sample.record
        data = encode_jpeg(sample.image, self.jpeg_quality)
        return data, {**sample.record, "file_md5": hashlib.md5(data).hexdigest()}

    def row(self, spec: shards.ShardSpec, index: int) -> dict[str, Any]:
        """A parquet row: the encoded image plus every schema column."""
        data, record = self.encoded(spec.split, index)
        return {"image": {"bytes": data, "path": None}, **record}

    def release_item(self, index: int) -> tuple[bytes, dict[str, Any]]:
        """(image bytes, record) of a release image."""
        return self.encoded("train", index)


def dataset_card(splits: Mapping[str, int], config: Mapping[str, Any]) -> str:
    """A minimal dataset card whose YAML header maps each split to its shards."""
    files = "\n".join(f"  - split: {name}\n    path: {shards.DATA_DIR}/{name}-*" for name in splits)
    sizes = ", ".join(f"{name}: {count}" for name, count in splits.items())
    return (
        f"---\nconfigs:\n- config_name: default\n  data_files:\n{files}\n---\n\n"
        "# Synthetic fundus photographs (VisionCLIP procedural generator)\n\n"
        f"Procedurally generated colour fundus images in the SynFundus-1M label schema ({sizes}).\n"
        "No patient data. Generated with:\n\n```json\n"
        + "\n".join(f"{k}: {v}" for k, v in sorted(config.items()))
        + "\n```\n"
    )


def write_parquet_dataset(
    out_dir: str | Path,
    splits: Mapping[str, int],
    maker: SampleMaker,
    *,
    rows_per_shard: int = 1000,
    workers: int = 1,
    on_row: Callable[[], None] | None = None,
    on_skip: Callable[[shards.ShardSpec], None] | None = None,
) -> shards.ShardReport:
    """Write (or finish writing) a sharded parquet dataset with features ``schema.datasets_features()``.

    Holds the folder's lock throughout: a second writer of the same folder (another generator run, or a training
    filling the same dataset cache) waits, naming this one, then finds the shards complete."""
    out_dir = Path(out_dir)
    config = {
        "generator": "visionclip.synthetic",
        "version": GENERATOR_VERSION,
        "image_size": maker.image_size,
        "seed": maker.seed,
        "prevalence": dict(maker.prevalence),
        "splits": dict(splits),
        "rows_per_shard": rows_per_shard,
        **maker.settings(),
    }
    specs = [spec for name, count in splits.items() for spec in shards.plan_shards(name, count, rows_per_shard)]
    schema = datasets_features().arrow_schema
    with folder_lock(out_dir, "generating synthetic parquet shards"):
        shards.check_manifest(out_dir, config)
        shards.atomic_write_bytes(out_dir / "README.md", dataset_card(splits, config).encode())
        return shards.write_shards(out_dir, specs, maker.row, schema, workers=workers, on_row=on_row, on_skip=on_skip)


def _release_item(task: tuple[SampleMaker, int]) -> tuple[bytes, dict[str, Any]]:
    maker, index = task
    return maker.release_item(index)


def write_release(
    out_dir: str | Path,
    num_images: int,
    maker: SampleMaker,
    *,
    workers: int = 1,
    on_row: Callable[[], None] | None = None,
) -> Path:
    """Write image files under ``images/`` and one ``metadata.csv`` at the root, like the SynFundus release.

    Images are written atomically; the CSV is written last, so it exists only when the release is complete.
    Holds the folder's lock, so two writers of one folder take turns. Returns the CSV path.
    """
    out_dir = Path(out_dir)
    with folder_lock(out_dir, "writing a synthetic release folder"):
        return _write_release(out_dir, num_images, maker, workers, on_row)


def _write_release(
    out_dir: Path, num_images: int, maker: SampleMaker, workers: int, on_row: Callable[[], None] | None
) -> Path:
    (out_dir / RELEASE_IMAGES).mkdir(parents=True, exist_ok=True)
    tasks = ((maker, index) for index in range(num_images))
    pool = multiprocessing.get_context().Pool(workers) if workers > 1 else None
    records = []
    try:
        items = pool.imap(_release_item, tasks, chunksize=4) if pool is not None else map(_release_item, tasks)
        for data, record in items:
            shards.atomic_write_bytes(out_dir / RELEASE_IMAGES / record["file_name"], data)
            records.append(record)
            if on_row is not None:
                on_row()
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMN_NAMES), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    csv_path = out_dir / RELEASE_CSV
    shards.atomic_write_bytes(csv_path, buffer.getvalue().encode("utf-8"))
    return csv_path


def summarise(record: Mapping[str, Any]) -> str:
    """A short label summary, e.g. ``OD DR2 gc tessellated q9`` (``not fundus`` for non-fundus frames)."""
    if not record["is_fundus"]:
        return "not fundus"
    eye = "OD" if record["eyes_side"] == "right" else "OS"
    findings = [name[3:] for name in FINDING_COLUMNS if record[name]]
    unreadable = [
        label
        for column, label in (
            ("is_retinal_region_readable", "ungradable"),
            ("is_optic_disc_readable", "no-disc"),
            ("is_macular_readable", "no-macula"),
        )
        if not record[column]
    ]
    parts = [eye, f"DR{record['dr_grade']}", *findings, *unreadable, f"q{record['retinal_region_quality_score']}"]
    return " ".join(parts)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType
        return ImageFont.load_default()


def contact_sheet(samples: list[SyntheticFundus], columns: int = 6, thumb: int = 256) -> Image.Image:
    """A grid of thumbnails, each with its label summary underneath (wrapped over two lines)."""
    if not samples:
        raise ValueError("no samples for the contact sheet")
    columns = max(1, min(columns, len(samples)))
    rows = -(-len(samples) // columns)
    font_size = max(10, thumb // 18)
    caption = 2 * font_size + 10
    sheet = Image.new("RGB", (columns * thumb, rows * (thumb + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    font = _font(font_size)
    for position, sample in enumerate(samples):
        x, y = (position % columns) * thumb, (position // columns) * (thumb + caption)
        sheet.paste(sample.image.resize((thumb, thumb), Image.Resampling.LANCZOS), (x, y))
        words = f"#{sample.index} {summarise(sample.record)}".split()
        lines, line = [], ""
        for word in words:
            if line and draw.textlength(line + " " + word, font=font) > thumb - 8:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}".strip()
        lines.append(line)
        if len(lines) > 2:
            lines = [lines[0], " ".join(lines[1:])]
        for k, text in enumerate(lines):
            draw.text((x + 4, y + thumb + 3 + k * (font_size + 2)), text, fill="black", font=font)
    return sheet
