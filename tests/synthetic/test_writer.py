import csv
import hashlib

import pytest

from visionclip.locking import HOLDER_FILE, LOCK_FILE
from visionclip.schema import COLUMN_NAMES, validate_record
from visionclip.synthetic import FundusGenerator
from visionclip.synthetic.writer import (
    SampleMaker,
    contact_sheet,
    parse_splits,
    split_seed,
    summarise,
    write_release,
)


def test_parse_splits():
    assert parse_splits("train=20000,validation=2000") == {"train": 20000, "validation": 2000}
    for bad in ("train", "train=0", "train=-3", "train=x", "1x=3", "train=1,train=2", ""):
        with pytest.raises(ValueError):
            parse_splits(bad)


def test_split_seeds():
    assert split_seed(7, "train") == 7
    assert split_seed(7, "validation") != split_seed(7, "test") != 7


def test_release_layout(tmp_path):
    maker = SampleMaker(96, 2, ())
    csv_path = write_release(tmp_path, 5, maker)
    assert csv_path == tmp_path / "metadata.csv"
    with open(csv_path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 and tuple(rows[0]) == COLUMN_NAMES
    for row in rows:
        data = (tmp_path / "images" / row["file_name"]).read_bytes()
        assert hashlib.md5(data).hexdigest() == row["file_md5"]
        assert validate_record(row) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([HOLDER_FILE, LOCK_FILE, "images", "metadata.csv"])


def test_summary_and_contact_sheet():
    generator = FundusGenerator(96, seed=1)
    samples = [generator.sample(i) for i in range(5)]
    assert summarise(samples[0].record).split()[0] in ("OD", "OS", "not")
    sheet = contact_sheet(samples, columns=3, thumb=80)
    assert sheet.size[0] == 240 and sheet.size[1] > 160
    with pytest.raises(ValueError):
        contact_sheet([])


def test_jpeg_rows_keep_the_labels_and_hash_their_own_bytes():
    import io

    import numpy as np
    from PIL import Image

    from visionclip.shards import ShardSpec

    png, jpeg = SampleMaker(96, 3, ()), SampleMaker(96, 3, (), image_format="jpeg", jpeg_quality=95)
    spec = ShardSpec(split="validation", index=0, count=1, start=0, stop=3)
    for index in range(3):
        lossless, lossy = png.row(spec, index), jpeg.row(spec, index)
        data = lossy["image"]["bytes"]
        assert Image.open(io.BytesIO(data)).format == "JPEG"
        assert lossy["file_name"] == f"validation-{index}.jpg" and lossless["file_name"] == f"validation-{index}.png"
        assert lossy["file_md5"] == hashlib.md5(data).hexdigest()
        ignored = ("image", "file_name", "file_md5")
        assert {k: v for k, v in lossy.items() if k not in ignored} == {
            k: v for k, v in lossless.items() if k not in ignored
        }
        difference = np.abs(
            np.asarray(Image.open(io.BytesIO(data)), dtype=float)
            - np.asarray(Image.open(io.BytesIO(lossless["image"]["bytes"])), dtype=float)
        )
        assert difference.mean() < 3.0
    with pytest.raises(ValueError, match="image_format"):
        SampleMaker(96, 3, (), image_format="webp")
