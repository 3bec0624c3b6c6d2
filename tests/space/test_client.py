"""The Space's API as `gradio_client` calls it, against the running app (the tiny model's saved folder)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.cbook
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image


@pytest.fixture(scope="module")
def client(space_url: str) -> Client:
    return Client(space_url, verbose=False)


def test_only_classify_is_an_api_endpoint(client: Client):
    assert list(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ["/classify"]


def test_classify_a_real_photograph(client: Client, real_photo: Path, tiny_folder: Path):
    probabilities, heatmap_class, heatmap, crop, summary = client.predict(
        handle_file(str(real_photo)), "glaucoma", "", api_name="/classify"
    )
    classes = json.loads((tiny_folder / "config.json").read_text())["zero_shot_tasks"]["glaucoma"]["classes"]
    confidences = {row["label"]: row["confidence"] for row in probabilities["confidences"]}
    assert sorted(confidences) == sorted(classes) and sum(confidences.values()) == pytest.approx(1, abs=1e-5)
    assert probabilities["label"] == max(confidences, key=confidences.get) == heatmap_class["value"]
    with Image.open(real_photo) as photo, Image.open(heatmap) as shown, Image.open(crop) as cropped:
        assert shown.size == photo.size and shown.format == "PNG"
        assert cropped.width < photo.width or cropped.height < photo.height
    assert "most likely" in summary


def test_classify_with_free_form_class_names(client: Client, real_photo: Path):
    probabilities, *_ = client.predict(
        handle_file(str(real_photo)), "glaucoma", "cataract, a normal fundus", api_name="/classify"
    )
    assert sorted(row["label"] for row in probabilities["confidences"]) == ["a normal fundus", "cataract"]


def test_a_non_fundus_or_unreadable_upload_gets_the_message(client: Client, tmp_path: Path):
    portrait = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with pytest.raises(AppError, match="does not look like a colour fundus photograph"):
        client.predict(handle_file(str(portrait)), "glaucoma", "", api_name="/classify")
    notes = tmp_path / "notes.jpg"
    notes.write_text("not an image")
    with pytest.raises(AppError, match="notes.jpg could not be read as an image"):
        client.predict(handle_file(str(notes)), "glaucoma", "", api_name="/classify")
