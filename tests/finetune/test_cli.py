"""finetune.py end to end on tiny sizes: each mode, and each kind of bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from tests.finetune.labelled_sets import HRF_CLASSES, write_set
from visionclip.cli.finetune import main

TINY = ["--epochs", "2", "--batch-size", "8", "--bootstrap", "10", "--mixed-precision", "no"]


@pytest.fixture
def run(tiny_folder: Path):
    """finetune.py on the tiny model's saved folder (random weights, saved once)."""

    def finetune(csv: Path, out: Path, *extra: str) -> int:
        return main(["--model", str(tiny_folder), "--dataset", f"hrf:{csv}", "--output-dir", str(out), *TINY, *extra])

    return finetune


@pytest.mark.parametrize("mode", ["linear-probe", "zero-shot-init", "full"])
def test_each_mode_writes_a_classifier_folder_with_cross_validated_results(
    run, labelled_csv, tiny_folder, tmp_path, mode
):
    out = tmp_path / "classifier"
    assert run(labelled_csv, out, "--mode", mode, "--folds", "3") == 0
    assert not (tmp_path / "classifier.tmp").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["VisionCLIPForImageClassification"]
    assert config["id2label"] == {str(i): name for i, name in enumerate(HRF_CLASSES)}
    assert config["auto_map"]["AutoModelForImageClassification"].endswith("VisionCLIPForImageClassification")
    entry = json.loads((out / "eval_results.json").read_text())["finetune"]
    assert entry["metrics"]["num_samples"] == 18 and len(entry["metrics"]["auroc_ci"]) == 2
    assert "group-disjoint" in entry["evaluated_on"]  # the CSV has a patient column and no fold column
    assert (out / "confusion_matrix.png").stat().st_size > 0
    card = ModelCard.load(out / "README.md")
    assert "95% bootstrap confidence intervals" in card.text and "| glaucoma |" in card.text
    accuracy = next(r for r in card.data.eval_results if r.metric_type == "accuracy")
    assert (
        accuracy.metric_value == round(entry["metrics"]["accuracy"], 4)
        and card.data.pipeline_tag == "image-classification"
    )
    weights = load_file(out / "model.safetensors")
    base = load_file(tiny_folder / "model.safetensors")
    stem = next(name for name in weights if name.startswith("vision_model.") and name.endswith("weight"))
    tower_moved = not np.array_equal(weights[stem].numpy(), base[stem].numpy())
    assert tower_moved == (mode == "full")


def _error(run, capsys, *args) -> str:
    with pytest.raises(SystemExit) as raised:
        run(*args)
    assert raised.value.code == 2
    return capsys.readouterr().err


def test_a_class_the_other_folds_never_train_on_is_named(run, tmp_path, capsys):
    csv = write_set(tmp_path / "data", per_class=4)
    text = csv.read_text().splitlines()
    # folds: every glaucoma image in fold 0, so the classifier of fold 0 never sees glaucoma
    lines = [text[0] + ",fold"] + [
        f"{line},{0 if 'glaucoma' in line else i % 2 + 1}" for i, line in enumerate(text[1:])
    ]
    csv.write_text("\n".join(lines) + "\n")
    err = _error(run, capsys, csv, tmp_path / "out")
    assert "fold 0 tests class 'glaucoma'" in err and "never appears in the training images" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


def test_a_class_with_fewer_images_than_folds_is_named(run, tmp_path, capsys):
    csv = write_set(tmp_path / "data", per_class=3)
    err = _error(run, capsys, csv, tmp_path / "out", "--folds", "4", "--cv-by", "stratified")
    assert "4 folds need at least 4 images of every class" in err and "healthy (3)" in err
    assert not (tmp_path / "out").exists()


def test_a_group_column_with_one_group_is_refused(run, tmp_path, capsys):
    csv = write_set(tmp_path / "data", per_class=4, patients_per_class=1)
    csv.write_text(
        "\n".join(
            line if number == 0 else line.rsplit(",", 1)[0] + ",same_patient"
            for number, line in enumerate(csv.read_text().splitlines())
        )
        + "\n"
    )
    err = _error(run, capsys, csv, tmp_path / "out")
    assert "group column puts every image in the one group 'same_patient'" in err
    assert not (tmp_path / "out").exists()


def test_missing_and_unreadable_images_are_skipped_and_reported(run, tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"not a png")
    rows = [
        {"file": "gone.png", "label": "healthy", "patient": "x1"},
        {"file": "broken.png", "label": "glaucoma", "patient": "x2"},
    ]
    csv = write_set(folder, per_class=4, rows=rows)
    assert run(csv, tmp_path / "out", "--mode", "linear-probe", "--folds", "2") == 0
    err = capsys.readouterr().err
    assert "2 of 14 rows skipped" in err and "gone.png" in err and "broken.png" in err
    entry = json.loads((tmp_path / "out" / "eval_results.json").read_text())["finetune"]
    assert sorted(Path(row["image"]).name for row in entry["unreadable"]) == ["broken.png", "gone.png"]
    assert entry["metrics"]["num_samples"] == 12
    assert "2 unreadable rows were skipped" in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.parametrize("start", [["--mode", "zero-shot-init"], ["--mode", "full", "--wise-alpha", "0.5"]])
def test_the_zero_shot_head_of_a_supervised_baseline_is_refused(tiny_folder, tmp_path, capsys, start):
    folder = tmp_path / "supervised"
    shutil.copytree(tiny_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "training_objective": "supervised"}))
    csv = write_set(tmp_path / "data", per_class=4)
    argv = ["--model", str(folder), "--dataset", f"hrf:{csv}", "--output-dir", str(tmp_path / "out"), *TINY, *start]
    with pytest.raises(SystemExit):
        main(argv)
    assert "supervised-pretraining baseline whose text side is untrained" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
