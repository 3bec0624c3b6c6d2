"""Hugging Face Inference Endpoints handler for a VisionCLIP model folder (`handler.py` beside the weights).

The Endpoints toolkit imports this file from the model folder, calls `EndpointHandler(path)` once, then
`handler(data)` per request with `data = {"inputs": ..., "parameters": {...}}`. Requests and responses have the
shape of the `zero-shot-image-classification` pipeline:

    {"inputs": "<base64 image>", "parameters": {"candidate_labels": ["glaucoma", "a normal fundus"]}}
    {"inputs": ["<base64>", "<base64>"], "parameters": {"task": "glaucoma"}}     # a batch, a recommended task

`inputs` is one image or a list of images, each base64 text (optionally a `data:` URI), raw bytes (an image body
the toolkit passes through) or a PIL image (what the toolkit makes of an `image/*` body). A string is always image
content, never a path or URL to open. `parameters` holds either `candidate_labels` (with an optional
`hypothesis_template`, default the pipeline's "This is a photo of {}."): one prompt per label, as the pipeline
scores them; or `task`: one of the model's recommended zero-shot tasks (`model.zero_shot_tasks`), scored with its
prompt ensembles. The answer for one image is `[{"score": ..., "label": ...}, ...]` highest first; for a list, one
such list per image. A request that cannot be answered gets `{"error": "<what is wrong>"}` instead.

Imports only what a Hub model folder can rely on: torch, transformers, PIL and the folder's own remote code.
"""

from __future__ import annotations

import base64
import binascii
import sys
from typing import Any

import torch
from PIL import Image
from transformers import AutoModel, AutoProcessor

DEFAULT_HYPOTHESIS_TEMPLATE = "This is a photo of {}."  # the zero-shot-image-classification pipeline's default
MAX_IMAGES = 64  # per request: a larger batch is refused rather than risking the endpoint's memory
IMAGE_BATCH_SIZE = 16  # images encoded together


class RequestError(ValueError):
    """A request the handler cannot answer; its message goes back to the caller."""


class EndpointHandler:
    """Zero-shot classification of fundus photographs for Inference Endpoints (see the module docstring)."""

    def __init__(self, path: str = "") -> None:
        self.model = AutoModel.from_pretrained(path, trust_remote_code=True).eval()
        self.processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
        # the folder's own image loader: decodes whole images, as the pipeline's `load_image` does, with the
        # processor's size guard and a `ValueError` naming what is wrong with corrupt or truncated data
        self._load_image = sys.modules[type(self.processor.image_processor).__module__].load_fundus_image

    def __call__(self, data: dict[str, Any]) -> list | dict[str, str]:
        try:
            sources, batched = _images(data)
            images = [self._decoded(source, where) for source, where in sources]
            parameters = _parameters(data)
            if "task" in parameters:
                labels, probs = self._task_scores(images, parameters)
            else:
                labels, probs = self._label_scores(images, parameters)
        except ValueError as error:  # RequestError, and the image processor's and model's own refusals
            return {"error": str(error)}
        answers = [_ranked(labels, row) for row in probs.tolist()]
        return answers if batched else answers[0]

    def _decoded(self, source: Any, where: str) -> Image.Image:
        try:
            return self._load_image(source)
        except ValueError as error:
            raise RequestError(f"{where}: {error}") from None

    def _task_scores(self, images: list[Any], parameters: dict[str, Any]) -> tuple[list[str], torch.Tensor]:
        task = parameters["task"]
        unused = sorted(set(parameters) & {"candidate_labels", "hypothesis_template"})
        if unused:
            raise RequestError(f"give either `task` or `candidate_labels`, not both (got `task` and {unused})")
        known = self.model.zero_shot_tasks
        if not isinstance(task, str) or task not in known:
            raise RequestError(f"unknown task {task!r}; this model's tasks are {sorted(known) or 'none'}")
        result = self.model.zero_shot(images, self.processor, task=task, batch_size=IMAGE_BATCH_SIZE)
        return result.class_names, result.probs

    @torch.no_grad()
    def _label_scores(self, images: list[Any], parameters: dict[str, Any]) -> tuple[list[str], torch.Tensor]:
        """The pipeline's computation: each label in the template, one text each, softmax of the logits."""
        labels = _candidate_labels(parameters.get("candidate_labels"))
        template = _hypothesis_template(parameters.get("hypothesis_template", DEFAULT_HYPOTHESIS_TEMPLATE))
        tokens = self.processor.tokenizer(
            [template.format(label) for label in labels], padding=True, return_tensors="pt"
        )
        text_embeds = self.model.encode_text(
            tokens["input_ids"], tokens["attention_mask"], tokens.get("token_type_ids")
        )
        image_embeds = torch.cat(
            [
                self.model.encode_image(self.processor.image_processor(chunk, return_tensors="pt")["pixel_values"])
                for chunk in (images[i : i + IMAGE_BATCH_SIZE] for i in range(0, len(images), IMAGE_BATCH_SIZE))
            ]
        )
        logits = self.model.logit_scale_value() * image_embeds @ text_embeds.t()
        return labels, logits.softmax(dim=-1)


def _images(data: Any) -> tuple[list[tuple[Any, str]], bool]:
    """The request's images (bytes or PIL images) with where each was in the request, and whether `inputs` was a
    list."""
    if not isinstance(data, dict):
        raise RequestError(f"the request must be an object with `inputs`, got {type(data).__name__}")
    inputs = data.get("inputs")
    if inputs is None or (isinstance(inputs, (str, bytes, bytearray, list)) and len(inputs) == 0):
        raise RequestError("no image: `inputs` must hold an image (base64 text or bytes) or a list of images")
    batched = isinstance(inputs, list)
    items = inputs if batched else [inputs]
    if len(items) > MAX_IMAGES:
        raise RequestError(f"{len(items)} images in one request; send at most {MAX_IMAGES}")
    wheres = [f"inputs[{number}]" if batched else "inputs" for number in range(len(items))]
    return [(_image(item, where), where) for item, where in zip(items, wheres, strict=True)], batched


def _image(item: Any, where: str) -> Any:
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, (bytes, bytearray, memoryview)):
        if not item:
            raise RequestError(f"no image: {where} is empty")
        return bytes(item)
    if isinstance(item, str):
        text = item.strip()
        if text.startswith("data:"):
            text = text.partition(",")[2]
        try:
            decoded = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(
                f"{where} is not base64 image data (a string is decoded as image content, never opened as a path "
                "or URL)"
            ) from None
        if not decoded:
            raise RequestError(f"no image: {where} decodes to no bytes")
        return decoded
    raise RequestError(f"{where}: expected base64 text, bytes or an image, got {type(item).__name__}")


def _parameters(data: dict[str, Any]) -> dict[str, Any]:
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RequestError(f"`parameters` must be an object, got {type(parameters).__name__}")
    if "task" not in parameters and "candidate_labels" not in parameters:
        raise RequestError("give `parameters.candidate_labels` (a list of class names) or `parameters.task`")
    return parameters


def _candidate_labels(labels: Any) -> list[str]:
    """A list of at least two distinct non-empty labels; a comma-separated string (the widget's form) is split."""
    if isinstance(labels, str):
        labels = [label.strip() for label in labels.split(",")]
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise RequestError(f"`candidate_labels` must be a list of strings, got {labels!r}")
    if any(not label.strip() for label in labels):
        raise RequestError(f"`candidate_labels` holds an empty label: {labels!r}")
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise RequestError(f"`candidate_labels` needs at least two distinct labels, got {labels!r}")
    return labels


def _hypothesis_template(template: Any) -> str:
    if not isinstance(template, str) or template.count("{}") != 1:
        raise RequestError(f"`hypothesis_template` must be a string with one {{}} for the label, got {template!r}")
    return template


def _ranked(labels: list[str], scores: list[float]) -> list[dict[str, Any]]:
    ranked = sorted(zip(scores, labels, strict=True), key=lambda pair: -pair[0])  # the pipeline's order
    return [{"score": score, "label": label} for score, label in ranked]
