"""A saved folder works for a Hub user: a fresh process, outside the checkout, loads it with trust_remote_code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.hub_user import run_as_hub_user
from visionclip.hub import HUB_CODE_FILES

TEXTS = ["A fundus photograph of glaucoma.", "A fundus photograph of a normal fundus.", "cataract"]
LONG_TEMPLATE = "This colour fundus photograph, taken with a wide-field camera, " * 6 + "shows {}."

CHILD = """
    import torch
    from transformers import (AutoConfig, AutoImageProcessor, AutoModel, AutoProcessor, AutoTokenizer, pipeline)

    folder, photo, texts, long_template, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], sys.argv[5]
    kw = {"trust_remote_code": True}
    config = AutoConfig.from_pretrained(folder, **kw)
    model = AutoModel.from_pretrained(folder, **kw).eval()
    processor = AutoProcessor.from_pretrained(folder, **kw)
    image_processor = AutoImageProcessor.from_pretrained(folder, **kw)
    tokenizer = AutoTokenizer.from_pretrained(folder, **kw)
    with torch.no_grad():
        inputs = processor(images=[photo], text=texts, return_tensors="pt")
        logits = model(**inputs).logits_per_image
        separate = model(**image_processor([photo], return_tensors="pt"),
                         **tokenizer(texts, padding=True, return_tensors="pt")).logits_per_image
    classifier = pipeline("zero-shot-image-classification", model=folder, **kw)
    labels = ["glaucoma", "healthy", "diabetic retinopathy", "cataract"]
    tasks = {task: model.zero_shot([photo], processor=processor, task=task).probs.tolist()
             for task in model.zero_shot_tasks}
    json.dump({
        "config_class": type(config).__name__,
        "model_module": type(model).__module__,
        "processor_class": type(processor).__name__,
        "image_processor_class": type(image_processor).__name__,
        "tokenizer_emits_token_type_ids": "token_type_ids" in tokenizer(["x"]),
        "logits": logits.tolist(),
        "separate_logits": separate.tolist(),
        "pipeline": classifier(photo, candidate_labels=labels),
        "pipeline_long": classifier(photo, candidate_labels=labels, hypothesis_template=long_template),
        "zero_shot": tasks,
    }, open(out, "w"))
"""


@pytest.fixture(scope="module")
def fresh_process_results(tiny_folder: Path, real_photos, tmp_path_factory) -> dict:
    workdir = tmp_path_factory.mktemp("hub_user")
    result_file = workdir / "result.json"
    args = [str(tiny_folder), str(real_photos[0]), json.dumps(TEXTS), LONG_TEMPLATE, str(result_file)]
    completed = run_as_hub_user(CHILD, args, workdir)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(result_file.read_text())


def test_saved_folder_holds_safetensors_and_code_only(tiny_folder: Path):
    names = {path.name for path in tiny_folder.iterdir()}
    assert "model.safetensors" in names
    assert {*HUB_CODE_FILES, "processor_config.json", "tokenizer.json"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")) for name in names)
    auto_map = json.loads((tiny_folder / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {"AutoConfig", "AutoModel", "AutoModelForZeroShotImageClassification"}
    processor_map = json.loads((tiny_folder / "processor_config.json").read_text())
    assert processor_map["auto_map"]["AutoProcessor"] == "processing_visionclip.VisionCLIPProcessor"
    assert processor_map["image_processor"]["auto_map"]["AutoImageProcessor"].endswith("VisionCLIPImageProcessor")


def test_fresh_process_loads_every_auto_class(fresh_process_results):
    assert fresh_process_results["config_class"] == "VisionCLIPConfig"
    assert fresh_process_results["model_module"].startswith("transformers_modules.")
    assert fresh_process_results["processor_class"] == "VisionCLIPProcessor"
    assert fresh_process_results["image_processor_class"] == "VisionCLIPImageProcessor"


def test_fresh_process_gives_identical_logits(fresh_process_results, tiny_model_and_processor, real_photos):
    model, processor = tiny_model_and_processor
    with torch.no_grad():
        expected = model(**processor(images=[real_photos[0]], text=TEXTS, return_tensors="pt")).logits_per_image
    torch.testing.assert_close(torch.tensor(fresh_process_results["logits"]), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(fresh_process_results["separate_logits"]), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("key", ["pipeline", "pipeline_long"])
def test_pipeline_scores_every_label_once_sorted(fresh_process_results, key):
    assert fresh_process_results["tokenizer_emits_token_type_ids"]
    results = fresh_process_results[key]
    labels = [r["label"] for r in results]
    scores = [r["score"] for r in results]
    assert sorted(labels) == sorted(["glaucoma", "healthy", "diabetic retinopathy", "cataract"])
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-5)


def test_zero_shot_helper_runs_every_task_from_reloaded_folder(fresh_process_results, tiny_model_and_processor):
    model, _ = tiny_model_and_processor
    assert set(fresh_process_results["zero_shot"]) == set(model.zero_shot_tasks)
    for task, probs in fresh_process_results["zero_shot"].items():
        assert len(probs[0]) == len(model.zero_shot_tasks[task]["classes"])
        assert sum(probs[0]) == pytest.approx(1.0, abs=1e-5)
