"""A finetune.py folder works for a Hub user: a fresh process outside the checkout loads it with
AutoModelForImageClassification and the image-classification pipeline and reproduces the saved predictions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.hub_user import run_as_hub_user
from visionclip.cli.finetune import main
from visionclip.cli.publish import main as publish

CHILD = """
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

    folder, images, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    with torch.no_grad():
        probs = model(**processor(images, return_tensors="pt")).logits.softmax(-1).tolist()
    classifier = pipeline("image-classification", model=folder, trust_remote_code=True)
    json.dump({
        "model_module": type(model).__module__,
        "probs": probs,
        "pipeline": [{r["label"]: r["score"] for r in classifier(image, top_k=None)} for image in images],
    }, open(out, "w"))
"""


@pytest.fixture(scope="module")
def classifier_folder(labelled_csv, tiny_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finetuned") / "classifier"
    args = ["--model", str(tiny_folder), "--dataset", f"hrf:{labelled_csv}", "--output-dir", str(out)]
    assert (
        main([*args, "--mode", "zero-shot-init", "--folds", "3", "--epochs", "3", "--bootstrap", "10"]) == 0
    )  # auto precision
    return out


def test_a_fresh_process_reproduces_the_saved_predictions(classifier_folder, labelled_csv, tmp_path):
    with (classifier_folder / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))[::4]
    classes = json.loads((classifier_folder / "config.json").read_text())["id2label"].values()
    expected = np.array([[float(row[f"score_{name}"]) for name in classes] for row in rows])
    images = [str(labelled_csv.parent / row["file"]) for row in rows]
    args = [str(classifier_folder), json.dumps(images), "result.json"]
    done = run_as_hub_user(CHILD, args, tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["model_module"].startswith("transformers_modules.")
    np.testing.assert_allclose(result["probs"], expected, atol=1e-4)
    pipeline_probs = [[scores[name] for name in classes] for scores in result["pipeline"]]
    np.testing.assert_allclose(pipeline_probs, expected, atol=1e-4)


def test_publish_stages_and_validates_a_classifier_folder(classifier_folder, capsys):
    assert publish([str(classifier_folder), "someone/hrf-classifier", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "confusion_matrix.png" in printed and "predictions.csv  (not a Hub model file)" in printed
    assert "dry run: nothing uploaded" in printed
