"""eval_zeroshot.py end to end on the real photographs, with a saved tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image

import eval_zeroshot
from visionclip.cards import render_model_card
from visionclip.paths import real_data_dir
from visionclip.zeroshot.tasks import load_task


@pytest.fixture(scope="module")
def report(tiny_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    assert (
        eval_zeroshot.main(
            [
                "--model",
                str(tiny_folder),
                "--model-name",
                "tiny",
                "--output-dir",
                str(out),
                "--bootstrap",
                "50",
                "--num-workers",
                "0",
            ]
        )
        == 0
    )
    return out


def test_both_real_sets_all_modes_with_baseline(report):
    entries = json.loads((report / "results.json").read_text())
    combos = {(e["model"], e["dataset"], e["mode"]) for e in entries}
    for model in ("tiny", "random init (same architecture)"):
        for dataset in ("hrf", "csdi"):
            for mode in ("zero-shot", "few-shot", "cross-validated"):
                assert (model, dataset, mode) in combos
    # MFIDDR has only a test split: zero-shot and the patient-grouped cross-validated probe, no few-shot probe
    assert {mode for model, dataset, mode in combos if dataset == "mfiddr"} == {"zero-shot", "cross-validated"}
    hrf_zero = next(e for e in entries if e["model"] == "tiny" and e["dataset"] == "hrf" and e["mode"] == "zero-shot")
    assert hrf_zero["metrics"]["num_samples"] == 30  # the test split
    assert len(hrf_zero["metrics"]["accuracy_ci"]) == 2
    mfiddr_zero = next(e for e in entries if e["dataset"] == "mfiddr" and e["mode"] == "zero-shot")
    assert mfiddr_zero["metrics"]["num_groups"] == 12 and "resample the 12 groups" in mfiddr_zero["evaluated_on"]
    assert "num_groups" not in hrf_zero["metrics"]  # HRF has no patient column: one image per subject
    csdi_cv = next(e for e in entries if e["dataset"] == "csdi" and e["mode"] == "cross-validated")
    assert csdi_cv["metrics"]["num_samples"] == 81 and "quadratic_kappa" in csdi_cv["metrics"]
    table = (report / "results.md").read_text()
    assert "| tiny | hrf | zero-shot | 30 |" in table and "Per class" in table
    for name in ("hrf_zero-shot_confusion.png", "csdi_cross-validated_roc.png"):
        with Image.open(report / "figures" / name) as image:
            assert image.size[0] > 300


def test_model_index_renders_into_a_card_that_loads_back(report, tiny_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_folder, folder)
    entries = [e for e in json.loads((report / "results.json").read_text()) if e["model"] == "tiny"]
    (folder / "eval_results.json").write_text(json.dumps({"real_datasets": entries}))
    render_model_card(folder, model_path=str(folder), repo_id="me/visionclip-tiny").save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.pipeline_tag == "zero-shot-image-classification"
    expected = json.loads((report / "model_index.json").read_text())
    assert len(loaded.data.eval_results) == len(expected)
    assert {r.dataset_name for r in loaded.data.eval_results} == {"hrf", "csdi", "mfiddr"}
    assert {r.metric_type for r in loaded.data.eval_results} >= {"accuracy", "roc_auc", "cohen_kappa"}
    assert "| tiny | hrf | zero-shot |" in loaded.text


def test_unreadable_images_are_counted_and_named(tiny_folder, tmp_path, capsys):
    source = real_data_dir() / "hrf"
    copy = tmp_path / "hrf"
    shutil.copytree(source, copy)
    (copy / "images" / "01_g.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    assert (
        eval_zeroshot.main(
            [
                "--model",
                str(tiny_folder),
                "--dataset",
                f"hrf:{copy / 'labels.csv'}",
                "--output-dir",
                str(out),
                "--bootstrap",
                "0",
                "--no-random-baseline",
                "--num-workers",
                "0",
                "--modes",
                "zero-shot",
            ]
        )
        == 0
    )
    assert "1 unreadable images" in capsys.readouterr().err
    entry = json.loads((out / "results.json").read_text())[0]
    assert entry["metrics"]["num_samples"] == 29
    assert (
        entry["unreadable"][0]["image"].endswith("01_g.jpg")
        and "not a readable image" in entry["unreadable"][0]["error"]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "hrf"], "expected TASK:SOURCE"),
        (["--dataset", "nope:/x.csv"], "Unknown task 'nope'"),
        (["--model", "/no/such/model"], "no such folder"),
        (["--shots", "0"], "--shots must be at least 1"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--batch-size", "-1"], "--batch-size must be at least 1"),
        (["--unit-columns", "patient", "side"], "no unit column(s) ['patient', 'side']"),
        (["--explain-upscale", "0"], "--explain-upscale must be from 1 to 4"),
        (["--explain", "overlays", "--explain-upscale", "5"], "--explain-upscale must be from 1 to 4"),
        (["--explain-upscale", "2"], "--explain-upscale needs --explain OUT_DIR"),
    ],
)
def test_bad_arguments_exit_with_a_message(args, message, capsys, tiny_folder):
    argv = ["--model", str(tiny_folder), *args] if "--model" not in args else args
    with pytest.raises(SystemExit):
        eval_zeroshot.main(argv)
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------------- datasets without a split column
HRF_LABELS = ("healthy", "diabetic_retinopathy", "glaucoma")


def small_fundus(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:96, :96]
    image = np.zeros((96, 96, 3), dtype=np.uint8)
    image[(yy - 48) ** 2 + (xx - 48) ** 2 < 44**2] = rng.integers(40, 220, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def csv_without_split(root: Path) -> str:
    rows = [f"images/{i}.png,{HRF_LABELS[i % 3]}" for i in range(12)]
    for i in range(12):
        small_fundus(root / "images" / f"{i}.png", i)
    (root / "labels.csv").write_text("file,label\n" + "\n".join(rows) + "\n")
    return str(root / "labels.csv")


def class_folders(root: Path) -> str:
    for i in range(12):
        small_fundus(root / HRF_LABELS[i % 3] / f"{i}.png", i)
    return str(root)


def datasets_folder(root: Path) -> str:
    import datasets

    files = [str(small_fundus(root / "raw" / f"{i}.png", i)) for i in range(12)]
    table = datasets.Dataset.from_dict({"image": files, "label": [HRF_LABELS[i % 3] for i in range(12)]})
    table.cast_column("image", datasets.Image()).to_parquet(str(root / "set" / "data" / "test-00000-of-00001.parquet"))
    return str(root / "set")


@pytest.mark.parametrize(
    ("make_source", "count"),
    [(csv_without_split, 12), (class_folders, 12), (datasets_folder, 12), (lambda root: "synthetic", 12)],
    ids=["csv", "class-folders", "datasets-folder", "synthetic"],
)
def test_a_dataset_without_splits_is_evaluated_whole(tiny_folder, tmp_path, capsys, make_source, count):
    out = tmp_path / "out"
    argv = ["--model", str(tiny_folder), "--dataset", f"hrf:{make_source(tmp_path)}", "--output-dir", str(out)]
    argv += ["--bootstrap", "0", "--no-random-baseline", "--num-workers", "0", "--shots", "2"]
    argv += ["--synthetic-count", str(count), "--modes", "zero-shot", "few-shot"]
    assert eval_zeroshot.main(argv) == 0
    entries = {e["mode"]: e for e in json.loads((out / "results.json").read_text())}
    assert entries["zero-shot"]["metrics"]["num_samples"] == count
    assert entries["zero-shot"]["evaluated_on"] == "all images (the dataset has no split column)"
    per_class = np.sum(entries["zero-shot"]["metrics"]["confusion_matrix"], axis=1)
    assert entries["few-shot"]["metrics"]["num_samples"] == count - np.minimum(per_class, 2).sum()
    assert entries["few-shot"]["evaluated_on"] == (
        "all images but the 2 per class the probe trains on (the dataset has no split column)"
    )
    assert "no split column: evaluated whole" in capsys.readouterr().err
    assert "zero-shot: all images (the dataset has no split column)" in (out / "results.md").read_text()


def test_split_datasets_say_which_split_was_scored(report):
    entries = json.loads((report / "results.json").read_text())
    described = {(e["dataset"], e["mode"]): e["evaluated_on"] for e in entries if e["model"] == "tiny"}
    assert described[("hrf", "zero-shot")] == "split 'test'"
    assert described[("hrf", "few-shot")] == "split 'test'; the probe trains on split 'fewshot'"
    assert described[("hrf", "cross-validated")] == "all images, each fold scored by a probe trained on the others"


# ------------------------------------------------------------------------------------------ --explain OUT_DIR
def test_explain_writes_overlays_of_a_few_images_per_class_for_the_predicted_and_true_class(
    tiny_folder, tiny_model_and_processor, tmp_path, capsys
):
    labels_csv = csv_without_split(tmp_path)
    out, overlays = tmp_path / "out", tmp_path / "overlays" / "new"
    argv = ["--model", str(tiny_folder), "--dataset", f"hrf:{labels_csv}", "--output-dir", str(out)]
    argv += ["--bootstrap", "0", "--no-random-baseline", "--num-workers", "0", "--modes", "zero-shot"]
    argv += ["--explain", str(overlays), "--explain-per-class", "2", "--explain-method", "gradcam"]
    argv += ["--mixed-precision", "no"]  # an untrained model's near-ties: compared with fp32 predictions below
    assert eval_zeroshot.main(argv) == 0

    written = sorted(path.name for path in (overlays / "hrf").iterdir())
    assert f"hrf: {len(written)} gradcam overlays written to {overlays}" in capsys.readouterr().out
    # the first two images of each class, in the CSV's order: 0 and 3 are healthy, 1 and 4 DR, 2 and 5 glaucoma
    model, processor = tiny_model_and_processor
    task = load_task("hrf")
    classifier = model.zero_shot_classifier(task.class_prompts(), processor.tokenizer)
    expected = set()
    for index in range(6):
        photo = tmp_path / "images" / f"{index}.png"
        with torch.no_grad():
            embedding = model.encode_image(processor.image_processor([photo], return_tensors="pt")["pixel_values"])
        predicted, true = task.labels[int((embedding @ classifier.t()).argmax())], HRF_LABELS[index % 3]
        slug = {label: label.replace("_", "-") for label in HRF_LABELS}
        expected |= {f"{slug[true]}__{index}__{slug[shown]}.png" for shown in (predicted, true)}
    assert set(written) == expected
    assert all(Image.open(overlays / "hrf" / name).size == (96, 96) for name in written)


@pytest.mark.parametrize(
    ("make_path", "message"),
    [
        (lambda root: root / "a_file.png", "exists and is not a folder"),
        (lambda root: root / "a_file.png" / "overlays", "cannot make the folder"),
    ],
    ids=["a-file", "under-a-file"],
)
def test_explain_to_a_path_that_cannot_be_a_folder_fails_before_evaluating(
    tiny_folder, tmp_path, capsys, make_path, message
):
    (tmp_path / "a_file.png").write_bytes(b"not a folder")
    argv = ["--model", str(tiny_folder), "--explain", str(make_path(tmp_path)), "--output-dir", str(tmp_path / "o")]
    with pytest.raises(SystemExit):
        eval_zeroshot.main(argv)
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing was evaluated


def test_unit_columns_score_each_eye_once_from_the_mean_of_its_fields(tiny_folder, tmp_path):
    mfiddr = real_data_dir() / "mfiddr" / "labels.csv"
    common = ["--model", str(tiny_folder), "--dataset", f"mfiddr:{mfiddr}", "--no-random-baseline", "--num-workers"]
    common += ["0", "--modes", "zero-shot", "cross-validated", "--bootstrap", "20"]
    assert eval_zeroshot.main([*common, "--output-dir", str(tmp_path / "images")]) == 0
    assert (
        eval_zeroshot.main([*common, "--unit-columns", "patient", "eye", "--output-dir", str(tmp_path / "eyes")]) == 0
    )
    per_image = {e["mode"]: e for e in json.loads((tmp_path / "images" / "results.json").read_text())}
    per_eye = {e["mode"]: e for e in json.loads((tmp_path / "eyes" / "results.json").read_text())}
    for mode in ("zero-shot", "cross-validated"):
        assert per_image[mode]["metrics"]["num_samples"] == 96
        assert per_eye[mode]["metrics"]["num_samples"] == 24  # 12 patients x 2 eyes, four fields each
        assert per_eye[mode]["metrics"]["num_groups"] == 12
        assert "the 24 units' images (4 each) averaged" in per_eye[mode]["evaluated_on"]
    assert per_eye["zero-shot"]["metrics"]["auroc"] != per_image["zero-shot"]["metrics"]["auroc"]
