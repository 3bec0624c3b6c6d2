from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from image_processing_visionclip import VisionCLIPImageProcessor
from visionclip.augment import FundusAugment
from visionclip.schema import CAPTIONED_COLUMNS, COLUMN_NAMES, FACTS, LABEL_VECTOR_COLUMNS, datasets_features
from visionclip.stream_parts import StreamPosition
from visionclip.stream_source import FileSource
from visionclip.streaming import build_stream, label_frequencies, make_dataloader, resolve_data_files
from visionclip.tokenization import build_knowledge_base_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES, SHARDS = 64, 8


def write_dataset(
    folder: Path, examples: int = EXAMPLES, shards: int = SHARDS, split: str = "train", rows_per_group: int = 1000
) -> Path:
    """A small dataset in the converter's layout: data/<split>-XXXXX-of-YYYYY.parquet with the full schema, written in
    parquet row groups of `rows_per_group` rows."""
    rng = np.random.default_rng(0)
    rows = []
    for index in range(examples):
        image = np.zeros((24, 24, 3), dtype=np.uint8)
        image[4:20, 4:20] = rng.integers(60, 255, 3)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        record = {name: 0 for name in COLUMN_NAMES}
        record.update(
            file_name=f"{index}.png",
            file_md5=f"{index:032x}",
            eyes_side="left",
            diagnosticAdvice="",
            dr_grade=index % 5,
            is_gc=int(index % 4 == 0),
            is_fundus=1,
            is_macular_readable=1,
            is_optic_disc_readable=1,
            is_retinal_region_readable=1,
            retinal_region_quality_score=9,
        )
        record["is_dm"] = record["is_abnormal"] = record["has_lesion"] = int(record["dr_grade"] > 0)
        record["is_abnormal"] |= record["is_gc"]
        rows.append({"image": {"bytes": buffer.getvalue(), "path": None}, **record})
    (folder / "data").mkdir(parents=True, exist_ok=True)
    per_shard = examples // shards
    for shard in range(shards):
        part = rows[shard * per_shard : (shard + 1) * per_shard]
        columns = {key: [row[key] for row in part] for key in part[0]}
        table = datasets.Dataset.from_dict(columns, features=datasets_features())
        table.to_parquet(folder / "data" / f"{split}-{shard:05d}-of-{shards:05d}.parquet", batch_size=rows_per_group)
    return folder


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("stream_data"))


@pytest.fixture(scope="module")
def processing():
    return VisionCLIPImageProcessor(size={"height": 32, "width": 32}), build_knowledge_base_tokenizer()


def test_resolve_source_kinds_and_errors(dataset_dir: Path, tmp_path: Path):
    files = resolve_data_files(str(dataset_dir), "train")
    assert len(files) == SHARDS and files == sorted(files)
    assert resolve_data_files(str(dataset_dir / "data" / "*.parquet"), "train") == files
    with pytest.raises(FileNotFoundError, match="No 'validation' parquet shards .*train"):
        resolve_data_files(str(dataset_dir), "validation")
    with pytest.raises(FileNotFoundError, match="match"):
        resolve_data_files(str(tmp_path / "*.parquet"), "train")
    with pytest.raises(ValueError, match="neither"):
        resolve_data_files("not-a-folder-or-id", "train")


class FileNameCaptioner:
    """Captions each example with its file name, so tests can tell examples apart."""

    def caption_with_facts(self, record, epoch):
        return record["file_name"], [0] * (2 * len(FACTS))


def test_batches_hold_pixels_tokens_labels_and_captions(dataset_dir: Path, processing):
    image_processor, tokenizer = processing
    stream = build_stream(str(dataset_dir), image_processor, tokenizer, batch_size=8, shuffle_buffer=1)
    batch = next(iter(make_dataloader(stream)))
    assert batch["pixel_values"].shape == (8, 3, 32, 32) and batch["pixel_values"].dtype == torch.uint8
    assert batch["input_ids"].shape[0] == 8 and batch["attention_mask"].shape == batch["input_ids"].shape
    assert batch["labels"].shape == (8, len(LABEL_VECTOR_COLUMNS))
    assert batch["caption_facts"].shape == (8, 2 * len(FACTS))
    assert all("fundus" in c.lower() or "retina" in c.lower() for c in batch["captions"])

    stream.transform.captioner = FileNameCaptioner()  # pairs each row with its labels
    for batch in make_dataloader(stream):
        names = [int(c.split(".")[0]) for c in batch["captions"]]
        assert batch["labels"][:, CAPTIONED_COLUMNS.index("dr_grade")].tolist() == [n % 5 for n in names]
        assert batch["labels"][:, CAPTIONED_COLUMNS.index("is_gc")].tolist() == [int(n % 4 == 0) for n in names]


RANK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    sys.path.insert(0, sys.argv[1] + "/tests")
    from test_streaming import FileNameCaptioner
    from image_processing_visionclip import VisionCLIPImageProcessor
    from visionclip.streaming import build_stream, make_dataloader
    from visionclip.tokenization import build_knowledge_base_tokenizer

    data, rank, world, workers, epochs = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    stream = build_stream(data, VisionCLIPImageProcessor(size={"height": 32, "width": 32}),
                          build_knowledge_base_tokenizer(), batch_size=4, rank=rank, world_size=world,
                          num_workers=workers, epochs=epochs, shuffle_buffer=8, seed=3, drop_last=False)
    stream.transform.captioner = FileNameCaptioner()  # identify examples exactly
    order = [[] for _ in range(epochs)]
    for batch in make_dataloader(stream):  # one DataLoader, its workers running every epoch
        order[batch["stream_state"]["epoch"]] += batch["captions"]
    print(json.dumps(order))
    """
)


def run_python(script: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    completed = subprocess.run(
        [sys.executable, "-c", script, str(REPO_ROOT), *args], capture_output=True, text=True, env=env
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout.strip().splitlines()[-1]


def test_two_ranks_two_workers_see_each_example_once_per_epoch(dataset_dir: Path):
    orders = [json.loads(run_python(RANK_SCRIPT, str(dataset_dir), str(rank), "2", "2", "2")) for rank in (0, 1)]
    for epoch in range(2):
        seen = orders[0][epoch] + orders[1][epoch]
        assert sorted(seen) == sorted(f"{i}.png" for i in range(EXAMPLES)), f"epoch {epoch}"
        assert not set(orders[0][epoch]) & set(orders[1][epoch])
    assert orders[0][0] != orders[0][1] or orders[1][0] != orders[1][1], "same order in both epochs"


def test_more_readers_than_files_split_row_groups_and_see_each_example_once_per_epoch(tmp_path: Path):
    data = write_dataset(tmp_path / "two_files", shards=2, rows_per_group=4)  # 16 row groups in 2 files
    orders = [json.loads(run_python(RANK_SCRIPT, str(data), str(rank), "2", "3", "2")) for rank in (0, 1)]
    for epoch in range(2):
        seen = orders[0][epoch] + orders[1][epoch]
        assert sorted(seen) == sorted(f"{i}.png" for i in range(EXAMPLES)), f"epoch {epoch}"


RESUME_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    sys.path.insert(0, sys.argv[1] + "/tests")
    from test_streaming import FileNameCaptioner
    from image_processing_visionclip import VisionCLIPImageProcessor
    from visionclip.streaming import build_stream, make_dataloader
    from visionclip.tokenization import build_knowledge_base_tokenizer

    data, mode, state_file, buffer, workers = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    stream = build_stream(data, VisionCLIPImageProcessor(size={"height": 32, "width": 32}),
                          build_knowledge_base_tokenizer(), batch_size=4, shuffle_buffer=buffer, seed=5,
                          num_workers=workers, drop_last=False)
    stream.transform.captioner = FileNameCaptioner()
    stream.set_epoch(1)
    seen = []
    if mode == "resume":
        with open(state_file) as handle:
            stream.load_state_dict(json.load(handle))
    for step, batch in enumerate(make_dataloader(stream)):
        seen += batch["captions"]
        stream.record_batch(batch)
        if mode == "stop" and step == 4:
            with open(state_file, "w") as handle:
                json.dump(stream.state_dict(), handle)
            break
    print(json.dumps(seen))
    """
)


@pytest.mark.parametrize(
    ("layout", "buffer"),
    [("8 files, 2 workers", 1), ("8 files, 2 workers", 8), ("2 files of 8 row groups, 3 workers", 1)],
)
def test_resume_mid_epoch_in_a_new_process(dataset_dir: Path, tmp_path: Path, layout: str, buffer: int):
    workers = "2" if layout == "8 files, 2 workers" else "3"
    data = dataset_dir if workers == "2" else write_dataset(tmp_path / "two_files", shards=2, rows_per_group=4)
    state_file = str(tmp_path / "stream_state.json")
    before = json.loads(run_python(RESUME_SCRIPT, str(data), "stop", state_file, str(buffer), workers))
    after = json.loads(run_python(RESUME_SCRIPT, str(data), "resume", state_file, str(buffer), workers))
    assert len(before) == 20
    assert not set(before) & set(after), "an example was delivered twice"
    assert len(after) == len(set(after))
    missing = EXAMPLES - len(before) - len(after)
    if buffer == 1:
        assert missing == 0
    else:  # the examples waiting in each worker's shuffle buffer at save time are lost for this epoch
        assert 0 <= missing <= int(workers) * buffer


def test_too_few_row_groups_for_the_readers_are_refused_with_the_numbers(tmp_path: Path, processing):
    data = write_dataset(tmp_path / "one_group", examples=8, shards=1)
    image_processor, tokenizer = processing
    with pytest.raises(ValueError, match=r"1 data file\(s\) with 1 parquet row group\(s\) .* 2 readers"):
        build_stream(str(data), image_processor, tokenizer, batch_size=4, num_workers=2)


def test_a_stream_state_from_another_world_size_or_worker_count_is_refused(dataset_dir: Path, processing):
    image_processor, tokenizer = processing
    one = build_stream(str(dataset_dir), image_processor, tokenizer, batch_size=4, shuffle_buffer=1)
    one.record_batch(next(iter(make_dataloader(one))))
    state = json.loads(json.dumps(one.state_dict()))  # checkpoints store it as JSON
    two = build_stream(str(dataset_dir), image_processor, tokenizer, batch_size=4, world_size=2, shuffle_buffer=1)
    with pytest.raises(ValueError, match="world size 1.* 2"):
        two.load_state_dict(state)
    more_workers = build_stream(str(dataset_dir), image_processor, tokenizer, batch_size=4, num_workers=2)
    with pytest.raises(ValueError, match="--num-workers 0.*--num-workers 2"):
        more_workers.load_state_dict(state)
    assert state["world_size"] == 1 and state["num_workers"] == 0 and state["epoch"] == 0


def test_filters_and_balanced_sampling(dataset_dir: Path, processing):
    image_processor, tokenizer = processing
    stream = build_stream(
        str(dataset_dir),
        image_processor,
        tokenizer,
        batch_size=4,
        shuffle_buffer=1,
        filters={"is_gc": [1]},
        drop_last=False,
    )
    labels = torch.cat([b["labels"] for b in make_dataloader(stream)])
    assert len(labels) == EXAMPLES // 4 and (labels[:, CAPTIONED_COLUMNS.index("is_gc")] == 1).all()
    assert label_frequencies(resolve_data_files(str(dataset_dir)), "is_gc") == {0: 0.75, 1: 0.25}
    balanced = build_stream(
        str(dataset_dir),
        image_processor,
        tokenizer,
        batch_size=4,
        shuffle_buffer=1,
        balance_by="is_gc",
        drop_last=False,
    )
    counts = torch.zeros(2)
    for epoch in range(6):
        balanced.set_epoch(epoch)
        for batch in make_dataloader(balanced):
            counts += torch.bincount(batch["labels"][:, CAPTIONED_COLUMNS.index("is_gc")], minlength=2)
    assert counts[1] == 6 * 16  # the rarer class is always kept
    assert abs(counts[0] / counts[1] - 1.0) < 0.35
    with pytest.raises(ValueError, match="column 'colour' is not in the dataset"):
        build_stream(str(dataset_dir), image_processor, tokenizer, batch_size=4, filters={"colour": [1]})


def test_unreadable_images_are_skipped_and_reported_once_with_a_count_and_an_example(
    tmp_path: Path, processing, caplog
):
    folder = write_dataset(tmp_path / "bad", examples=8, shards=1)
    shard = next((folder / "data").glob("*.parquet"))
    table = datasets.Dataset.from_parquet(str(shard))
    table = table.cast_column("image", datasets.Image(decode=False))
    rows = table.to_list()
    rows[3]["image"] = {"bytes": b"not a png", "path": None}
    fixed = datasets.Dataset.from_list(rows, features=datasets_features())
    fixed.to_parquet(str(shard))
    image_processor, tokenizer = processing
    stream = build_stream(str(folder), image_processor, tokenizer, batch_size=2, shuffle_buffer=1, drop_last=False)
    with caplog.at_level("WARNING"):
        for epoch in range(3):
            stream.set_epoch(epoch)
            assert sum(len(b["captions"]) for b in make_dataloader(stream)) == 7
    reports = [record.getMessage() for record in caplog.records]
    assert len(reports) == 1, reports  # the same image fails every epoch: one report, not one per image per epoch
    assert "1 of 8 images could not be read" in reports[0] and f"{3:032x}" in reports[0]


class OnlyTheInterface:
    """An image processor seen through `ImagePreparer` alone: any other attribute is an AttributeError."""

    def __init__(self, image_processor):
        self._image_processor = image_processor
        self.calls: set[str] = set()

    def __getattr__(self, name: str):
        if name not in INTERFACE:
            raise AttributeError(f"{name} is not part of ImagePreparer")
        self.calls.add(name)
        return getattr(self._image_processor, name)


INTERFACE = {"prepare_image", "load_and_crop", "placement", "to_pixel_values", "pixel_gain_offset"}


@pytest.mark.parametrize("augment", [None, FundusAugment()], ids=["plain", "augmented"])
def test_the_stream_needs_only_the_image_preparer_interface(dataset_dir: Path, processing, augment):
    from visionclip.pixels import ImagePreparer, PixelNormalizer

    image_processor, tokenizer = processing
    assert {name for name in vars(ImagePreparer) if not name.startswith("_")} == INTERFACE
    assert isinstance(image_processor, ImagePreparer)
    seen = OnlyTheInterface(image_processor)
    stream = build_stream(str(dataset_dir), seen, tokenizer, batch_size=8, shuffle_buffer=1, augment=augment)
    batch = next(iter(make_dataloader(stream)))
    pixels = PixelNormalizer(seen, "cpu")(batch["pixel_values"])
    assert pixels.shape == (8, 3, 32, 32)
    used = {"load_and_crop", "placement"} if augment else {"prepare_image"}
    assert seen.calls == used | {"pixel_gain_offset"}


# ------------------------------------------------------------------------------- the first stage alone
@pytest.fixture(scope="module")
def files(dataset_dir: Path) -> list[str]:
    return resolve_data_files(str(dataset_dir), "train")


def file_names(rows) -> list[str]:
    return [row["file_name"] for row, _ in rows]


def test_two_processes_with_two_workers_read_every_row_once_per_epoch_in_a_new_order(files: list[str]):
    sources = [FileSource(files, rank=rank, world_size=2, num_workers=2, shuffle_buffer=4) for rank in (0, 1)]
    epochs = [
        [
            name
            for source in sources
            for worker in (0, 1)
            for name in file_names(source.rows(worker, StreamPosition(e)))
        ]
        for e in (0, 1)
    ]
    assert all(sorted(epoch) == sorted(f"{i}.png" for i in range(EXAMPLES)) for epoch in epochs)
    assert epochs[0] != epochs[1]


def test_a_saved_position_continues_where_reading_stood(files: list[str]):
    source = FileSource(files, shuffle_buffer=1, seed=3)
    whole = list(source.rows(0, StreamPosition(2)))
    row, position = whole[20]
    source.record(0, position)
    resumed = FileSource(files, shuffle_buffer=1, seed=3)
    resumed.load_state_dict(source.state_dict())
    assert resumed.epoch == 2 and resumed.position(0) == position
    assert file_names(resumed.rows(0, resumed.position(0))) == file_names(whole[21:])
    with pytest.raises(ValueError, match="world size 1, this run has 2"):
        FileSource(files, world_size=2).load_state_dict(source.state_dict())


def test_label_vector_marks_a_missing_haze_grade():
    """A SynFundus-1M row has no `media_haze`: its label vector says so (-1) instead of claiming clear media (0)."""
    from visionclip.schema import HAZE_COLUMN, MISSING_LABEL
    from visionclip.stream_examples import label_vector

    row = {name: 0 for name in CAPTIONED_COLUMNS} | {"dr_grade": 2, "is_fundus": 1}
    haze = LABEL_VECTOR_COLUMNS.index(HAZE_COLUMN)
    assert label_vector(row)[haze] == MISSING_LABEL
    assert label_vector(row | {HAZE_COLUMN: None})[haze] == MISSING_LABEL
    assert label_vector(row | {HAZE_COLUMN: 2})[haze] == 2 and label_vector(row | {HAZE_COLUMN: 0})[haze] == 0
    assert label_vector(row)[: len(CAPTIONED_COLUMNS)] == [row[c] for c in CAPTIONED_COLUMNS]
