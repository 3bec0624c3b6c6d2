"""The data stage's JPEG set, derived from its PNG set by re-encoding the same images instead of rendering them again.

The generator's JPEG output is its rendered image encoded with `encode_jpeg`; the PNG set holds the same rendered
images losslessly. So decoding each PNG and encoding it the generator's way gives the folder that
`generate_fundus.py --image-format jpeg` would write (same manifest, rows, file names and checksums) at the cost of
a decode and an encode per image, a small part of rendering one. The loader stage then compares the two encodings of
the same content.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from PIL import Image

from visionclip import shards
from visionclip.synthetic.generator import encode_jpeg
from visionclip.synthetic.writer import GENERATOR_VERSION, SampleMaker, file_name_for, write_parquet_dataset


@functools.lru_cache(maxsize=4)  # a worker often makes several rows of one shard in a row
def _shard_rows(path: str) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()


@dataclass(frozen=True)
class JpegFromPng(SampleMaker):
    """Makes the rows of a JPEG set from the rows of the PNG set at `png_set` generated with the same settings."""

    png_set: str = ""

    def row(self, spec: shards.ShardSpec, index: int) -> dict[str, Any]:
        png_row = _shard_rows(str(shards.shard_path(self.png_set, spec)))[index - spec.start]
        with Image.open(io.BytesIO(png_row["image"]["bytes"])) as image:
            data = encode_jpeg(image, self.jpeg_quality)
        record = {key: value for key, value in png_row.items() if key != "image"}
        record.update(
            file_name=file_name_for(spec.split, index, self.image_format), file_md5=hashlib.md5(data).hexdigest()
        )
        return {"image": {"bytes": data, "path": None}, **record}


def derive_jpeg_set(png_set: Path, out: Path, *, jpeg_quality: int = 95, workers: int = 1) -> shards.ShardReport:
    """Write at `out` the JPEG set with the content of the generated PNG set at `png_set`."""
    manifest = json.loads((png_set / shards.MANIFEST).read_text())
    if manifest.get("image_format", "png") != "png" or manifest.get("version") != GENERATOR_VERSION:
        raise ValueError(
            f"{png_set} is not a PNG set of generator version {GENERATOR_VERSION}: its manifest says {manifest}"
        )
    maker = JpegFromPng(
        manifest["image_size"],
        manifest["seed"],
        tuple(sorted(manifest["prevalence"].items())),
        image_format="jpeg",
        jpeg_quality=jpeg_quality,
        png_set=str(png_set),
    )
    return write_parquet_dataset(
        out, manifest["splits"], maker, rows_per_shard=manifest["rows_per_shard"], workers=workers
    )
