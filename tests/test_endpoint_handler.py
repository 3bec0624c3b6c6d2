"""The Inference Endpoints handler, called as the toolkit calls it: `handler.py` imported from a saved model folder
in a fresh process outside the checkout, `EndpointHandler(path)`, then `handler(data)` per request. Its answers match
the zero-shot-image-classification pipeline's for the same inputs; bad payloads get an error answer, not a crash."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from tests.hub_user import run_as_hub_user
from tests.test_architecture import REMOTE_CODE_THIRD_PARTY, imported_names
from visionclip.factory import build_model
from visionclip.hub import ENDPOINT_HANDLER_FILE, HUB_CODE_FILES, add_endpoint_handler
from visionclip.resources import ENDPOINT_HANDLER, data_path

LABELS = ["glaucoma", "a normal fundus", "diabetic retinopathy"]
TEMPLATE = "A retinal photograph showing {}."

CHILD = """
    import base64, importlib.util, io
    from PIL import Image
    from transformers import AutoProcessor, pipeline

    folder, photos, labels, template, out = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4], sys.argv[5]
    # huggingface-inference-toolkit's check_and_register_custom_pipeline_from_directory
    spec = importlib.util.spec_from_file_location("handler.EndpointHandler", f"{folder}/handler.py")
    sys.path.insert(0, folder)
    module = importlib.util.module_from_spec(spec)
    sys.modules["handler.EndpointHandler"] = module
    spec.loader.exec_module(module)
    handler = module.EndpointHandler(folder)

    classifier = pipeline("zero-shot-image-classification", model=folder, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    raw = [open(path, "rb").read() for path in photos]
    b64 = [base64.b64encode(data).decode() for data in raw]
    ask = lambda inputs, **parameters: handler({"inputs": inputs, "parameters": parameters})
    bad = {
        "no_inputs": {"parameters": {"candidate_labels": labels}},
        "empty_inputs": {"inputs": "", "parameters": {"candidate_labels": labels}},
        "empty_list": {"inputs": [], "parameters": {"candidate_labels": labels}},
        "corrupt_bytes": {"inputs": b"this is not an image", "parameters": {"candidate_labels": labels}},
        "corrupt_base64": {"inputs": base64.b64encode(b"GIF89a garbage").decode(), "parameters": {"candidate_labels": labels}},
        "truncated_jpeg": {"inputs": [b64[0], base64.b64encode(raw[0][: len(raw[0]) // 3]).decode()],
                           "parameters": {"candidate_labels": labels}},
        "a_path_not_base64": {"inputs": photos[0], "parameters": {"candidate_labels": labels}},
        "not_an_image_type": {"inputs": 42, "parameters": {"candidate_labels": labels}},
        "empty_labels": {"inputs": b64[0], "parameters": {"candidate_labels": []}},
        "blank_label": {"inputs": b64[0], "parameters": {"candidate_labels": ["glaucoma", " "]}},
        "one_label": {"inputs": b64[0], "parameters": {"candidate_labels": ["glaucoma"]}},
        "no_labels_no_task": {"inputs": b64[0]},
        "unknown_task": {"inputs": b64[0], "parameters": {"task": "no-such-task"}},
        "task_and_labels": {"inputs": b64[0], "parameters": {"task": next(iter(classifier.model.zero_shot_tasks)),
                                                             "candidate_labels": labels}},
        "template_without_slot": {"inputs": b64[0], "parameters": {"candidate_labels": labels,
                                                                   "hypothesis_template": "A photo."}},
        "parameters_not_object": {"inputs": b64[0], "parameters": ["glaucoma"]},
    }
    tasks = list(classifier.model.zero_shot_tasks)
    json.dump({
        "handler_base64": ask(b64[0], candidate_labels=labels),
        "handler_data_uri": ask("data:image/jpeg;base64," + b64[0], candidate_labels=labels),
        "handler_bytes": ask(raw[0], candidate_labels=labels),
        "handler_pil": ask(Image.open(io.BytesIO(raw[0])).convert("RGB"), candidate_labels=labels),
        "pipeline": classifier(b64[0], candidate_labels=labels),
        "handler_batch": ask(b64, candidate_labels=labels),
        "pipeline_each": [classifier(image, candidate_labels=labels) for image in b64],
        "handler_template": ask(b64[1], candidate_labels=labels, hypothesis_template=template),
        "pipeline_template": classifier(b64[1], candidate_labels=labels, hypothesis_template=template),
        "handler_tasks": {task: ask(b64, task=task) for task in tasks},
        "zero_shot": {task: classifier.model.zero_shot(list(photos), processor, task=task).probs.tolist() for task in tasks},
        "class_names": {task: classifier.model.zero_shot_tasks[task]["classes"] for task in tasks},
        "bad": {name: handler(payload) for name, payload in bad.items()},
    }, open(out, "w"))
"""

# each bad payload's error names the problem
EXPECTED_ERRORS = {
    "no_inputs": "no image",
    "empty_inputs": "no image",
    "empty_list": "no image",
    "corrupt_bytes": "not a readable image",
    "corrupt_base64": "inputs: ",
    "truncated_jpeg": "inputs[1]: ",
    "a_path_not_base64": "not base64",
    "not_an_image_type": "expected base64 text, bytes or an image",
    "empty_labels": "candidate_labels",
    "blank_label": "empty label",
    "one_label": "at least two distinct labels",
    "no_labels_no_task": "candidate_labels",
    "unknown_task": "unknown task 'no-such-task'",
    "task_and_labels": "not both",
    "template_without_slot": "hypothesis_template",
    "parameters_not_object": "`parameters` must be an object",
}


@pytest.fixture(scope="module")
def varied_tiny_folder(tmp_path_factory) -> Path:
    """The tiny model with random batch-norm statistics (fresh ones make its image tower constant in eval mode, so
    different photographs would score alike), saved with its handler as a training run saves it."""
    model, processor = build_model("tiny")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.vision_model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
    folder = tmp_path_factory.mktemp("handler_model")
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    add_endpoint_handler(folder)
    return folder


@pytest.fixture(scope="module")
def answers(varied_tiny_folder: Path, real_photos, tmp_path_factory) -> dict:
    workdir = tmp_path_factory.mktemp("endpoint_user")
    photos = [str(real_photos[0]), str(real_photos[-1])]
    args = [str(varied_tiny_folder), json.dumps(photos), json.dumps(LABELS), TEMPLATE, str(workdir / "out.json")]
    completed = run_as_hub_user(CHILD, args, workdir)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads((workdir / "out.json").read_text())


def assert_same_ranking(found: list[dict], expected: list[dict]) -> None:
    assert [entry["label"] for entry in found] == [entry["label"] for entry in expected]
    assert [entry["score"] for entry in found] == pytest.approx([entry["score"] for entry in expected], abs=1e-5)


def test_the_handler_file_is_written_into_the_model_folder(varied_tiny_folder: Path):
    assert (varied_tiny_folder / ENDPOINT_HANDLER_FILE).is_file()


def test_the_handler_imports_only_what_a_hub_model_folder_has():
    allowed = REMOTE_CODE_THIRD_PARTY | {Path(name).stem for name in HUB_CODE_FILES} | set(sys.stdlib_module_names)
    tops = {name.split(".")[0] for name in imported_names("handler", data_path(ENDPOINT_HANDLER)) if name}
    assert tops <= allowed | {"__future__"}, sorted(tops - allowed)


@pytest.mark.parametrize("form", ["handler_base64", "handler_data_uri", "handler_bytes", "handler_pil"])
def test_one_image_answers_as_the_pipeline(answers: dict, form: str):
    assert_same_ranking(answers[form], answers["pipeline"])
    assert sum(entry["score"] for entry in answers[form]) == pytest.approx(1.0, abs=1e-5)


def test_a_batch_answers_as_the_pipeline_image_by_image(answers: dict):
    assert len(answers["handler_batch"]) == 2
    for found, expected in zip(answers["handler_batch"], answers["pipeline_each"], strict=True):
        assert_same_ranking(found, expected)
    # the two photographs score differently, so a mixed-up batch order would show
    assert answers["pipeline_each"][0] != answers["pipeline_each"][1]


def test_hypothesis_template_answers_as_the_pipeline(answers: dict):
    assert_same_ranking(answers["handler_template"], answers["pipeline_template"])
    assert answers["handler_template"] != answers["handler_base64"]


def test_task_answers_with_the_models_zero_shot(answers: dict):
    assert answers["handler_tasks"]
    for task, per_image in answers["handler_tasks"].items():
        for found, probs in zip(per_image, answers["zero_shot"][task], strict=True):
            expected = dict(zip(answers["class_names"][task], probs, strict=True))
            assert {entry["label"] for entry in found} == set(expected)
            assert [entry["score"] for entry in found] == sorted((e["score"] for e in found), reverse=True)
            assert {e["label"]: e["score"] for e in found} == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("name", sorted(EXPECTED_ERRORS))
def test_a_bad_payload_gets_an_error_answer(answers: dict, name: str):
    answer = answers["bad"][name]
    assert isinstance(answer, dict) and set(answer) == {"error"}, answer
    assert EXPECTED_ERRORS[name] in answer["error"]
