import multiprocessing
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from visionclip import shards
from visionclip.schema import datasets_features
from visionclip.synthetic import FundusGenerator
from visionclip.synthetic.writer import SampleMaker, write_parquet_dataset

SIZE = 96
MAKER = SampleMaker(SIZE, 5, tuple(sorted({"not_fundus": 0.1}.items())))
SPLITS = {"train": 10, "validation": 4}


def shard_files(out):
    return sorted((out / shards.DATA_DIR).glob("*.parquet"))


def test_plan_shards_covers_every_row_once():
    specs = shards.plan_shards("train", 2500, 1000)
    assert [(s.start, s.stop) for s in specs] == [(0, 1000), (1000, 2000), (2000, 2500)]
    assert specs[0].filename == "train-00000-of-00003.parquet"
    with pytest.raises(ValueError):
        shards.plan_shards("train", 0, 10)


def test_parquet_round_trip(tmp_path):
    import datasets

    out = tmp_path / "ds"
    report = write_parquet_dataset(out, SPLITS, MAKER, rows_per_shard=4)
    assert len(report.written) == 4 and not report.skipped
    assert [p.name for p in shard_files(out)][0] == "train-00000-of-00003.parquet"
    loaded = datasets.load_dataset(
        "parquet",
        data_files={split: str(out / "data" / f"{split}-*.parquet") for split in SPLITS},
        cache_dir=str(tmp_path / "cache"),
    )
    assert loaded["train"].features == datasets_features()
    assert loaded["train"].num_rows == 10 and loaded["validation"].num_rows == 4
    generator = FundusGenerator(SIZE, prevalence={"not_fundus": 0.1}, seed=5)
    for index in (0, 7):
        row = loaded["train"][index]
        expected = generator.sample(index)
        assert np.array_equal(np.asarray(row.pop("image").convert("RGB")), np.asarray(expected.image))
        assert row == expected.record
    validation = loaded["validation"][0]
    assert validation["file_name"] == "validation-0.png"
    assert validation["file_md5"] != loaded["train"][0]["file_md5"]  # held-out images are different images
    streamed = datasets.load_dataset(
        "parquet", data_files=str(out / "data" / "train-*.parquet"), split="train", streaming=True
    )
    first = next(iter(streamed))
    assert isinstance(first["image"], Image.Image) and first["file_name"] == "0.png"


def test_resume_rewrites_only_missing_shards(tmp_path):
    out = tmp_path / "ds"
    write_parquet_dataset(out, SPLITS, MAKER, rows_per_shard=4)
    files = shard_files(out)
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino, p.read_bytes()) for p in files}
    missing = files[1]
    missing.unlink()
    truncated = files[3]
    truncated.write_bytes(truncated.read_bytes()[:100])  # a corrupt file with a final name is not complete
    stale = out / shards.DATA_DIR / (shards.TEMP_PREFIX + "123-train-00002-of-00003.parquet")
    stale.write_bytes(b"partial")
    report = write_parquet_dataset(out, SPLITS, MAKER, rows_per_shard=4)
    assert sorted(report.written) == sorted([missing.name, truncated.name])
    assert len(report.skipped) == 2
    assert not stale.exists()
    for path in shard_files(out):
        mtime, inode, data = before[path.name]
        assert path.read_bytes() == data  # deterministic contents
        if path.name not in report.written:
            assert (path.stat().st_mtime_ns, path.stat().st_ino) == (mtime, inode)  # untouched
    assert not [p for p in (out / shards.DATA_DIR).iterdir() if p.name.startswith(shards.TEMP_PREFIX)]


def test_failed_shard_leaves_no_final_file(tmp_path):
    schema = datasets_features().arrow_schema
    path = tmp_path / "data" / "train-00000-of-00001.parquet"

    def rows():
        yield MAKER.row(shards.ShardSpec("train", 0, 1, 0, 2), 0)
        raise KeyboardInterrupt  # killed mid-shard

    with pytest.raises(KeyboardInterrupt):
        shards.write_shard(path, rows(), schema, 2)
    assert not path.exists()
    assert not list(path.parent.iterdir())


def test_workers_do_not_change_contents(tmp_path):
    write_parquet_dataset(tmp_path / "one", {"train": 6}, MAKER, rows_per_shard=3, workers=1)
    write_parquet_dataset(tmp_path / "two", {"train": 6}, MAKER, rows_per_shard=3, workers=2)
    for a, b in zip(shard_files(tmp_path / "one"), shard_files(tmp_path / "two"), strict=True):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()
    assert pq.ParquetFile(shard_files(tmp_path / "one")[0]).metadata.num_rows == 3


@dataclass(frozen=True)
class RowAfterOthersStarted:
    """make_row whose first `barrier.parties` rows each wait until that many rows are being made at once."""

    barrier: object  # a Manager's Barrier proxy (picklable, unlike multiprocessing.Barrier)

    def __call__(self, spec: shards.ShardSpec, index: int) -> dict:
        if index < self.barrier.parties:
            self.barrier.wait(timeout=60)  # only so that a pool that cannot run them together fails, not hangs
        return {"index": index}


def test_every_worker_is_busy_across_shard_boundaries(tmp_path):
    # Small shards (the GPU check's 8-row shards, 15 workers) used to keep at most one chunk of 4 rows per shard in
    # flight: 2 of the 15 workers busy, 11 img/s where 15 workers make 90
    workers, rows_per_shard = 4, 2
    specs = shards.plan_shards("train", 12, rows_per_shard)
    schema = pa.schema([("index", pa.int64())])
    with multiprocessing.Manager() as manager:
        make_row = RowAfterOthersStarted(manager.Barrier(workers))
        report = shards.write_shards(tmp_path, specs, make_row, schema, workers=workers)
    assert len(report.written) == 6
    rows = [pq.read_table(shards.shard_path(tmp_path, spec)).column("index").to_pylist() for spec in specs]
    assert rows == [list(range(spec.start, spec.stop)) for spec in specs]  # in order, each row in its own shard


def test_a_different_configuration_is_refused(tmp_path):
    out = tmp_path / "ds"
    write_parquet_dataset(out, {"train": 2}, MAKER, rows_per_shard=2)
    other = SampleMaker(SIZE, 6, MAKER.prevalence)
    with pytest.raises(ValueError, match="different configuration"):
        write_parquet_dataset(out, {"train": 2}, other, rows_per_shard=2)


def test_atomic_write_bytes(tmp_path):
    target = tmp_path / "a" / "b.bin"
    shards.atomic_write_bytes(target, b"xyz")
    assert target.read_bytes() == b"xyz" and os.listdir(target.parent) == ["b.bin"]
