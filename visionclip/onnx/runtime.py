"""Zero-shot classification with a VisionCLIP model exported by `export_onnx.py`, on ONNX Runtime, without torch.

The export folder holds a copy of this file (`visionclip_onnx.py`), so it works on its own:

    from visionclip_onnx import OnnxZeroShot            # from inside the export folder (or with it on sys.path)
    model = OnnxZeroShot("visionclip-onnx")             # int8=True for the quantised encoders, if exported
    result = model.zero_shot(["photo.jpg"], task="glaucoma")        # or class_names=["cataract", "no cataract"]
    print(result.predictions, result.probs)

Needs onnxruntime, numpy, Pillow and transformers (for the saved tokenizer and the saved image processor,
`image_processing_visionclip.py`, which run without torch). It imports nothing of the `visionclip` package: the
scores are those of `VisionCLIPModel.zero_shot` (prompt ensembles: each class the renormalised mean of its prompts'
normalised text embeddings; logits the temperature times the cosine similarities; softmax over classes).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from transformers import AutoTokenizer

SETTINGS_FILE = "zero_shot.json"
IMAGE_PROCESSOR_CODE = "image_processing_visionclip.py"
PROCESSOR_CONFIG = "processor_config.json"
ENCODER_FILES = {
    False: ("image_encoder.onnx", "text_encoder.onnx"),
    True: ("image_encoder.int8.onnx", "text_encoder.int8.onnx"),
}


@dataclass
class ZeroShotScores:
    """`N` images scored against `C` classes: `probs` `(N, C)` (rows sum to 1), `logits` `(N, C)`."""

    class_names: list[str]
    probs: np.ndarray
    logits: np.ndarray
    task: str | None = None

    @property
    def predictions(self) -> list[str]:
        return [self.class_names[index] for index in self.probs.argmax(axis=-1)]


class OnnxZeroShot:
    """The exported image and text encoders with the model's processor, prompts and temperature."""

    def __init__(self, folder: str | Path, int8: bool = False, threads: int | None = None) -> None:
        self.folder = Path(folder)
        self.settings = json.loads(_required(self.folder, SETTINGS_FILE).read_text(encoding="utf-8"))
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        image_file, text_file = (_required(self.folder, name) for name in ENCODER_FILES[int8])
        providers = ["CPUExecutionProvider"]
        self.image_session = onnxruntime.InferenceSession(str(image_file), options, providers=providers)
        self.text_session = onnxruntime.InferenceSession(str(text_file), options, providers=providers)
        self.text_input_names = [node.name for node in self.text_session.get_inputs()]
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
        self.image_processor = _load_image_processor(self.folder)
        self.logit_scale = float(self.settings["logit_scale"])
        self._classifiers: dict[str, np.ndarray] = {}

    @property
    def zero_shot_tasks(self) -> dict[str, dict[str, Any]]:
        """The recommended tasks saved with the model: `{task: {"classes", "prompts", ...}}`."""
        return dict(self.settings["zero_shot_tasks"] or {})

    def pixel_values(self, images: Sequence[Any]) -> np.ndarray:
        """Images (paths, bytes, PIL images, arrays) -> `(N, 3, H, W)` float32, by the saved image processor."""
        return self.image_processor(list(images), return_tensors="np")["pixel_values"].astype(np.float32)

    def encode_pixels(self, pixel_values: np.ndarray) -> np.ndarray:
        """`(N, 3, H, W)` pixel values -> `(N, D)` L2-normalised image embeddings."""
        return self.image_session.run(None, {"pixel_values": np.ascontiguousarray(pixel_values, np.float32)})[0]

    def encode_images(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """Images -> `(N, D)` L2-normalised image embeddings, `batch_size` images per encoder call."""
        images = list(images)
        if not images:
            raise ValueError("no images given")
        return np.concatenate(
            [
                self.encode_pixels(self.pixel_values(images[i : i + batch_size]))
                for i in range(0, len(images), batch_size)
            ]
        )

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> `(T, D)` L2-normalised text embeddings (tokenized as the model's processor does: padded,
        truncated to the tokenizer's limit, then to the text tower's positions as the model itself cuts them)."""
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="np")
        limit = self.settings["max_text_length"]
        feed = {name: tokens[name][:, :limit].astype(np.int64) for name in self.text_input_names}
        return self.text_session.run(None, feed)[0]

    def class_prompts(self, task: str | None = None, class_names: Sequence[str] | None = None) -> dict[str, list[str]]:
        """Prompt ensemble per class from a recommended `task` or free-form `class_names` (not both), as the
        model's `class_prompts`: at least two distinct non-empty names, each in the model's prompt templates."""
        if (task is None) == (class_names is None):
            raise ValueError("give exactly one of `task` (a recommended task) or `class_names`")
        if task is not None:
            tasks = self.zero_shot_tasks
            if task not in tasks:
                raise ValueError(f"unknown zero-shot task {task!r}; this model knows {sorted(tasks) or 'none'}")
            return dict(zip(tasks[task]["classes"], tasks[task]["prompts"], strict=True))
        if isinstance(class_names, str) or not all(isinstance(name, str) for name in class_names):
            raise ValueError(f"`class_names` must be a list of class names, got {class_names!r}")
        names = [name.strip() for name in class_names]
        if any(not name for name in names) or len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"`class_names` needs at least two distinct non-empty names, got {list(class_names)!r}")
        templates = self.settings["prompt_templates"] or ["{}"]
        return {name: [template.format(name) for template in templates] for name in names}

    def classifier(self, class_prompts: dict[str, list[str]]) -> np.ndarray:
        """`{class: prompts}` -> `(C, D)` class embeddings: each the renormalised mean of its prompts' embeddings."""
        key = json.dumps(class_prompts, sort_keys=True)
        if key not in self._classifiers:
            rows = [_normalized(self.encode_texts(prompts).mean(axis=0)) for prompts in class_prompts.values()]
            self._classifiers[key] = np.stack(rows).astype(np.float32)
        return self._classifiers[key]

    def scores(self, image_embeddings: np.ndarray, class_prompts: dict[str, list[str]], task: str | None = None):
        """`(N, D)` image embeddings against the classes of `class_prompts` -> `ZeroShotScores`."""
        logits = self.logit_scale * image_embeddings.astype(np.float32) @ self.classifier(class_prompts).T
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return ZeroShotScores(list(class_prompts), shifted / shifted.sum(axis=-1, keepdims=True), logits, task)

    def zero_shot(
        self,
        images: Any,
        task: str | None = None,
        class_names: Sequence[str] | None = None,
        batch_size: int = 32,
    ) -> ZeroShotScores:
        """Classify one image or a list of images with a recommended `task` or free-form `class_names`."""
        prompts = self.class_prompts(task, class_names)
        images = list(images) if isinstance(images, (list, tuple)) else [images]
        return self.scores(self.encode_images(images, batch_size), prompts, task)


def _required(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a complete VisionCLIP ONNX export: missing {name}")
    return path


def _normalized(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def _load_image_processor(folder: Path):
    """The export's own copy of the image processor (a transformers image processor that needs no torch), with the
    settings saved beside it."""
    code = _required(folder, IMAGE_PROCESSOR_CODE)
    name = f"visionclip_onnx_image_processing_{abs(hash(str(code.resolve())))}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, code)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    settings = json.loads(_required(folder, PROCESSOR_CONFIG).read_text(encoding="utf-8"))["image_processor"]
    return sys.modules[name].VisionCLIPImageProcessor.from_dict(settings)
