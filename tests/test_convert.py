"""The SynFundus-1M converter on a release-shaped folder from the generator, with planted bad rows."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from unittest import mock

import datasets
import numpy as np
import pytest
from huggingface_hub import DatasetCard
from PIL import Image

from visionclip.captions import Captioner
from visionclip.cli import convert as convert_synfundus
from visionclip.schema import COLUMN_NAMES, LABEL_COLUMNS
from visionclip.synthetic.labels import resolve_prevalence
from visionclip.synthetic.writer import SampleMaker, write_release

ROWS = 30


@pytest.fixture(scope="module")
def clean_release(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("release")
    write_release(folder, ROWS, SampleMaker(96, 11, tuple(sorted(resolve_prevalence().items()))))
    return folder


def read_metadata(folder: Path) -> list[dict[str, str]]:
    with (folder / "metadata.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_metadata(
    folder: Path,
    rows: list[dict[str, str]],
    name: str = "metadata.csv",
    delimiter: str = ",",
    columns: list[str] | None = None,
) -> None:
    columns = columns or list(rows[0])
    with (folder / name).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, delimiter=delimiter, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def planted_release(clean_release: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The clean release with five bad rows planted; returns the folder and {file_name: expected reason}."""
    folder = tmp_path / "release"
    shutil.copytree(clean_release, folder)
    rows = read_metadata(folder)
    (folder / "images" / rows[3]["file_name"]).unlink()  # missing file
    (folder / "images" / rows[7]["file_name"]).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)  # corrupt PNG
    rows[11]["file_md5"] = "0" * 32  # md5 mismatch
    rows[15]["file_name"] = "../outside.png"  # path outside the release
    rows[19]["dr_grade"] = "7"  # label out of range
    write_metadata(folder, rows)
    expected = {
        rows[3]["file_name"]: "not found",
        rows[7]["file_name"]: "unreadable image",
        rows[11]["file_name"]: "md5 mismatch",
        "../outside.png": "outside the release folder",
        rows[19]["file_name"]: "dr_grade: 7 is outside [0, 4]",
    }
    return folder, expected


def test_round_trip_keeps_good_rows_intact_and_reports_bad_ones(planted_release, tmp_path: Path, capsys):
    folder, expected = planted_release
    out = tmp_path / "converted"
    assert convert_synfundus.main([str(folder), str(out), "--rows-per-shard", "8", "--workers", "2"]) == 1
    assert "5 rows rejected" in capsys.readouterr().err

    with (out / "rejected.csv").open() as handle:
        rejected = {row["file_name"]: row["reasons"] for row in csv.DictReader(handle)}
    assert set(rejected) == set(expected)
    for name, reason in expected.items():
        assert reason in rejected[name], (name, rejected[name])

    converted = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert len(converted) == ROWS - 5
    source = {row["file_name"]: row for row in read_metadata(folder)}
    for row in converted:
        original = source[row["file_name"]]
        on_disk = np.asarray(Image.open(folder / "images" / row["file_name"]).convert("RGB"))
        np.testing.assert_array_equal(np.asarray(row["image"].convert("RGB")), on_disk)
        for column in LABEL_COLUMNS:  # an empty optional cell (media_haze of a non-fundus frame) stays empty
            assert row[column] == (int(original[column]) if original[column] else None), column
        assert row["eyes_side"] == original["eyes_side"] and row["file_md5"] == original["file_md5"]
    card = DatasetCard.load(out / "README.md")
    assert card.data.license == "cc-by-nc-sa-4.0" and "rejected" in card.text


def test_a_release_without_the_generator_columns_converts_and_captions_without_haze(clean_release, tmp_path: Path):
    """SynFundus-1M's own metadata has no `media_haze`: the conversion succeeds, leaves the column empty, and the
    captions of its rows state no haze degree."""
    folder = tmp_path / "synfundus-like"
    shutil.copytree(clean_release, folder)
    rows = read_metadata(folder)
    write_metadata(folder, rows, columns=[name for name in COLUMN_NAMES if name != "media_haze"])
    out = tmp_path / "converted"
    assert convert_synfundus.main([str(folder), str(out), "--workers", "1"]) == 0
    converted = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert len(converted) == ROWS and set(converted["media_haze"]) == {None}
    captioner = Captioner()
    hazy_words = [p for c in captioner.knowledge.concepts_for_column("media_haze") for p in c.phrases]
    for row in converted.remove_columns("image"):
        caption = captioner(row)
        assert not any(phrase in caption for phrase in hazy_words), caption


def test_interrupted_conversion_resumes_without_rewriting_complete_shards(clean_release, tmp_path: Path):
    out = tmp_path / "converted"
    assert convert_synfundus.main([str(clean_release), str(out), "--rows-per-shard", "8"]) == 0
    shard_files = sorted((out / "data").glob("*.parquet"))
    assert len(shard_files) == 4
    stamps = {p.name: p.stat().st_mtime_ns for p in shard_files}
    shard_files[1].unlink()  # as if killed while writing it
    (out / "data" / ".tmp-123-train-00001-of-00004.parquet").write_bytes(b"partial")
    assert convert_synfundus.main([str(clean_release), str(out), "--rows-per-shard", "8"]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in sorted((out / "data").glob("*.parquet"))}
    assert set(after) == set(stamps)
    assert [name for name in after if after[name] != stamps[name]] == [shard_files[1].name]
    assert not list((out / "data").glob(".tmp-*"))
    # a different shard size into the same folder is refused, not mixed
    assert convert_synfundus.main([str(clean_release), str(out), "--rows-per-shard", "5"]) == 2


def test_tsv_with_missing_optional_and_extra_columns(clean_release, tmp_path: Path, capsys):
    folder = tmp_path / "release"
    shutil.copytree(clean_release, folder)
    rows = read_metadata(folder)
    (folder / "metadata.csv").unlink()
    for row in rows:
        row["hospital"] = "site-a"
    columns = [c for c in COLUMN_NAMES if c not in ("file_md5", "diagnosticAdvice")] + ["hospital"]
    write_metadata(folder, rows, name="labels.tsv", delimiter="\t", columns=columns)
    out = tmp_path / "converted"
    assert convert_synfundus.main([str(folder), str(out)]) == 0
    assert (
        "optional missing ['file_md5', 'diagnosticAdvice'], extra carried through ['hospital']"
        in capsys.readouterr().out
    )
    converted = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert set(converted["hospital"]) == {"site-a"}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda folder: (folder / "metadata.csv").write_text("file_name,eyes_side\n1.png,left\n"),
            "required columns missing",
        ),
        (lambda folder: (folder / "metadata.csv").unlink(), "expected one metadata"),
        (lambda folder: shutil.rmtree(folder), "Release folder not found"),
    ],
)
def test_unusable_release_exits_2_with_a_message(clean_release, tmp_path: Path, capsys, make, message):
    folder = tmp_path / "release"
    shutil.copytree(clean_release, folder)
    make(folder)
    assert convert_synfundus.main([str(folder), str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


def test_push_to_hub_uploads_a_private_dataset_repo(clean_release, tmp_path: Path):
    out = tmp_path / "converted"
    with (
        mock.patch("huggingface_hub.HfApi.create_repo", return_value="https://hf.co/datasets/me/sf") as create,
        mock.patch("huggingface_hub.HfApi.upload_folder") as upload,
    ):
        assert convert_synfundus.main([str(clean_release), str(out), "--push-to-hub", "me/sf"]) == 0
    create.assert_called_once_with("me/sf", repo_type="dataset", private=True, exist_ok=True)
    assert upload.call_args.kwargs["folder_path"] == str(out) and upload.call_args.kwargs["repo_type"] == "dataset"
    assert {".lock", ".lock.json"} <= set(upload.call_args.kwargs["ignore_patterns"])  # the folder lock stays local
    with mock.patch("huggingface_hub.HfApi.create_repo", side_effect=OSError("401 Unauthorized")):
        assert convert_synfundus.main([str(clean_release), str(out), "--push-to-hub", "me/sf"]) == 2
    assert len(list((out / "data").glob("*.parquet"))) == 1  # the local folder is intact


def test_rejected_report_is_csv_readable(planted_release, tmp_path: Path):
    folder, _ = planted_release
    out = tmp_path / "converted"
    convert_synfundus.main([str(folder), str(out)])
    rows = list(csv.reader(io.StringIO((out / "rejected.csv").read_text())))
    assert rows[0] == ["row", "file_name", "reasons"] and len(rows) == 6
    assert [int(r[0]) for r in rows[1:]] == sorted(int(r[0]) for r in rows[1:])


@pytest.mark.parametrize("link", ["image", "folder", "indexed-image"])
def test_symlinks_out_of_the_release_are_rejected_rows(clean_release: Path, tmp_path: Path, link: str):
    folder, outside = tmp_path / "release", tmp_path / "outside"
    shutil.copytree(clean_release, folder)
    outside.mkdir()
    rows = read_metadata(folder)
    name = rows[4]["file_name"]
    (folder / "images" / name).rename(outside / name)
    if link == "folder":
        (folder / "linked").symlink_to(outside)
        rows[4]["file_name"] = f"linked/{name}"
    elif link == "indexed-image":
        (folder / "elsewhere").mkdir()
        (folder / "elsewhere" / name).symlink_to(outside / name)  # found by its name, not by the CSV's path
        rows[4]["file_name"] = name
    else:
        (folder / "images" / name).symlink_to(outside / name)
        rows[4]["file_name"] = f"images/{name}"
    write_metadata(folder, rows)
    out = tmp_path / "converted"
    assert convert_synfundus.main([str(folder), str(out), "--rows-per-shard", "8"]) == 1
    with (out / "rejected.csv").open() as handle:
        rejected = {row["file_name"]: row["reasons"] for row in csv.DictReader(handle)}
    assert list(rejected) == [rows[4]["file_name"]]
    assert f"a symlink to {outside / name}, outside the release folder" in rejected[rows[4]["file_name"]]


@pytest.mark.parametrize("repo_id", ["../..", "me/..", "sf", "a/b/c"])
def test_a_bad_push_to_hub_repo_id_is_refused_before_converting(clean_release, tmp_path: Path, capsys, repo_id):
    with mock.patch("huggingface_hub.HfApi.upload_folder") as upload, pytest.raises(SystemExit):
        convert_synfundus.main([str(clean_release), str(tmp_path / "out"), "--push-to-hub", repo_id])
    upload.assert_not_called()
    assert f"--push-to-hub: repo_id {repo_id!r}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
