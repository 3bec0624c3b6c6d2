"""The Space's logic without a browser: model source, upload and fundus checks, and one analysis of a real
photograph with the tiny model's saved folder."""

from __future__ import annotations

import json
from pathlib import Path

import fundus_demo
import matplotlib.cbook
import numpy as np
import pytest
from fundus_demo import DemoError, FundusDemo, fundus_problem, model_source, parse_class_names, read_photograph
from PIL import Image

SPACE_EXAMPLES = Path(fundus_demo.__file__).parent / "examples"
NOT_A_FUNDUS = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))  # a portrait photograph


@pytest.fixture(scope="module")
def demo(tiny_folder: Path) -> FundusDemo:
    return FundusDemo.load(str(tiny_folder))


def test_model_source_prefers_the_flag_then_the_variable_then_the_main_job(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(fundus_demo, "REPOSITORY", tmp_path)
    (tmp_path / "runs" / "visionclip" / "model").mkdir(parents=True)
    monkeypatch.delenv(fundus_demo.MODEL_ENV, raising=False)
    assert model_source() == str(tmp_path / "runs" / "visionclip" / "model")
    monkeypatch.setenv(fundus_demo.MODEL_ENV, "owner/from-variable")
    assert model_source() == "owner/from-variable"
    assert model_source(str(tmp_path)) == str(tmp_path)


def test_a_missing_main_job_model_says_how_to_make_it(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(fundus_demo, "REPOSITORY", tmp_path)
    monkeypatch.delenv(fundus_demo.MODEL_ENV, raising=False)
    with pytest.raises(DemoError, match=r"make demo.*--model"):
        model_source()
    with pytest.raises(DemoError, match="not a Hub id"):
        model_source(str(tmp_path / "no" / "such" / "folder"))


def test_app_main_exits_with_the_message_when_the_model_is_missing(monkeypatch, tmp_path: Path, capsys):
    import app

    monkeypatch.setattr(fundus_demo, "REPOSITORY", tmp_path)
    monkeypatch.delenv(fundus_demo.MODEL_ENV, raising=False)
    assert app.main([]) == 2
    assert "make demo" in capsys.readouterr().err


def test_analyse_a_real_photograph_with_a_recommended_task(demo: FundusDemo, tiny_folder: Path, real_photo: Path):
    task = "glaucoma"
    classes = json.loads((tiny_folder / "config.json").read_text())["zero_shot_tasks"][task]["classes"]
    analysis = demo.analyse(real_photo, task)
    assert sorted(analysis.probabilities) == sorted(classes)
    probabilities = list(analysis.probabilities.values())
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) == pytest.approx(1, abs=1e-5)
    photo = read_photograph(real_photo)
    assert analysis.crop_box == demo.processor.image_processor.field_of_view_box(photo)
    left, top, right, bottom = analysis.crop_box
    assert (right - left, bottom - top) != photo.size  # HRF's dark border is cropped away
    assert max(analysis.crop.size) <= fundus_demo.CROP_SIDE
    assert abs(analysis.crop.width / analysis.crop.height - (right - left) / (bottom - top)) < 0.02
    assert list(analysis.overlays) == list(analysis.probabilities)
    assert all(image.size == photo.size for image in analysis.overlays.values())  # within overlay's MAX_SIDE
    assert analysis.top_class in analysis.summary and task in analysis.summary


def test_analyse_with_free_form_class_names_uses_them_instead_of_the_task(demo: FundusDemo, real_photo: Path):
    analysis = demo.analyse(real_photo, "glaucoma", " cataract , a normal fundus,")
    assert sorted(analysis.probabilities) == ["a normal fundus", "cataract"]


def test_the_heatmap_is_drawn_over_the_field_of_view(demo: FundusDemo, real_photo: Path):
    analysis = demo.analyse(real_photo, "glaucoma")
    photo = np.asarray(read_photograph(real_photo), dtype=np.int16)
    shown = np.asarray(analysis.overlays[analysis.top_class], dtype=np.int16)
    left, top, right, bottom = analysis.crop_box
    centre = (slice(top + (bottom - top) // 3, bottom - (bottom - top) // 3), slice(left + (right - left) // 3, None))
    assert np.abs(shown[centre] - photo[centre]).mean() > 10  # coloured by the map, not the photograph as it was


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda path: path.write_text("not an image"), "could not be read as an image: not a readable image file"),
        (
            lambda path: path.write_bytes(Path(SPACE_EXAMPLES / "normal.jpg").read_bytes()[:2000]),
            "truncated or corrupt",
        ),
        (lambda path: path.write_bytes(b""), "could not be read as an image"),
    ],
    ids=["text", "truncated-jpeg", "empty"],
)
def test_an_unreadable_upload_is_named_with_the_reason(demo: FundusDemo, tmp_path: Path, make, message):
    upload = tmp_path / "upload" / "photo.jpg"
    upload.parent.mkdir()
    make(upload)
    with pytest.raises(DemoError, match=message) as raised:
        demo.analyse(upload, "glaucoma")
    assert str(raised.value).startswith("photo.jpg ") and str(tmp_path) not in str(raised.value)


def test_a_plainly_non_fundus_picture_is_refused(demo: FundusDemo):
    with pytest.raises(DemoError, match="does not look like a colour fundus photograph: .* corners are bright"):
        demo.analyse(NOT_A_FUNDUS, "glaucoma")


def test_fundus_check_refuses_a_grey_field_and_a_blank_picture():
    grey_field = Image.new("RGB", (300, 300))
    grey_field.paste(Image.new("RGB", (240, 240), (150, 150, 150)), (30, 30))
    assert "red-orange" in fundus_problem(grey_field)
    assert "no bright field" in fundus_problem(Image.new("RGB", (300, 300)))


def test_fundus_check_accepts_every_real_photograph_and_every_example(real_photos: list[Path]):
    photos = [*real_photos, *sorted(SPACE_EXAMPLES.glob("*.jpg"))]
    problems = {path.name: fundus_problem(read_photograph(path)) for path in photos}
    assert not {name: problem for name, problem in problems.items() if problem}


def test_class_names_need_two_distinct_names():
    assert parse_class_names("  ") == []
    with pytest.raises(DemoError, match="at least two"):
        parse_class_names("glaucoma,")
    with pytest.raises(DemoError, match="glaucoma is repeated"):
        parse_class_names("glaucoma, normal, glaucoma")


def test_missing_photograph_and_unknown_task_are_explained(demo: FundusDemo, real_photo: Path):
    with pytest.raises(DemoError, match="Upload a fundus photograph"):
        demo.analyse(None, "glaucoma")
    with pytest.raises(DemoError, match="Choose a recommended task"):
        demo.analyse(real_photo, "no-such-task")
