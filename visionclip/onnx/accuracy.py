"""Zero-shot accuracy of an ONNX export (fp32, and int8 where exported) against the eager model it came from, on the
shared real photographs (`visionclip.paths.real_data_dir()`: HRF, CSDI, MFIDDR with their evaluation tasks' prompt
ensembles, every image of each set). Every backend scores the same pixel values, made once by the model's processor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..factory import load_model
from ..paths import real_data_dir
from ..zeroshot.data import load_eval_dataset
from ..zeroshot.tasks import load_task
from .runtime import ENCODER_FILES, OnnxZeroShot

REAL_SETS = ("hrf", "csdi", "mfiddr")
CSV_COLUMNS = {"file": "file", "label": "label", "split": "split", "fold": "fold"}
EAGER = "eager"


@dataclass
class SetComparison:
    """One real set: its size, each backend's accuracy, how often each ONNX backend predicts what eager predicts,
    and the lowest cosine between its image embeddings and eager's."""

    name: str
    images: int
    accuracy: dict[str, float] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)
    min_cosine: dict[str, float] = field(default_factory=dict)


def backends(export_folder: Path, threads: int | None) -> dict[str, OnnxZeroShot]:
    """The export's fp32 runtime, and its int8 one when the export holds quantised encoders."""
    found = {"onnx fp32": OnnxZeroShot(export_folder, threads=threads)}
    if all((export_folder / name).is_file() for name in ENCODER_FILES[True]):
        found["onnx int8"] = OnnxZeroShot(export_folder, int8=True, threads=threads)
    return found


def compare_on_real_sets(
    model_folder: Path, export_folder: Path, names: tuple[str, ...] = REAL_SETS, batch_size: int = 16, threads=None
) -> list[SetComparison]:
    model, processor = load_model(model_folder)
    runtimes = backends(Path(export_folder), threads)
    results = []
    for name in names:
        task = load_task(name)
        dataset = load_eval_dataset(str(real_data_dir() / name / "labels.csv"), task, name, CSV_COLUMNS)
        labels = np.array([item.label for item in dataset.items])
        embeddings: dict[str, list[np.ndarray]] = {EAGER: [], **{key: [] for key in runtimes}}
        for start in range(0, len(dataset.items), batch_size):
            chunk = [item.image for item in dataset.items[start : start + batch_size]]
            pixels = processor.image_processor(chunk, return_tensors="np")["pixel_values"]
            with torch.inference_mode():
                embeddings[EAGER].append(model.encode_image(torch.from_numpy(pixels)).float().numpy())
            for key, runtime in runtimes.items():
                embeddings[key].append(runtime.encode_pixels(pixels))
        prompts = task.class_prompts()
        classifier = model.zero_shot_classifier(prompts, processor.tokenizer).float().numpy()
        eager_embeds = np.concatenate(embeddings[EAGER])
        scale = float(model.logit_scale_value().detach())
        predicted = {EAGER: (scale * eager_embeds @ classifier.T).argmax(axis=-1)}
        comparison = SetComparison(name, len(labels))
        for key, runtime in runtimes.items():
            embeds = np.concatenate(embeddings[key])
            predicted[key] = runtime.scores(embeds, prompts).probs.argmax(axis=-1)
            comparison.agreement[key] = float((predicted[key] == predicted[EAGER]).mean())
            comparison.min_cosine[key] = float((embeds * eager_embeds).sum(axis=-1).min())
        comparison.accuracy = {key: float((found == labels).mean()) for key, found in predicted.items()}
        results.append(comparison)
    return results


def markdown(results: list[SetComparison]) -> str:
    """The comparison as a Markdown table: accuracy per backend, then agreement with eager and lowest cosine."""
    keys = list(results[0].accuracy)
    onnx_keys = [key for key in keys if key != EAGER]
    header = ["set", "images", *(f"accuracy {key}" for key in keys)]
    header += [f"same prediction as eager, {key}" for key in onnx_keys]
    header += [f"lowest cosine to eager, {key}" for key in onnx_keys]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        cells = [result.name, str(result.images), *(f"{result.accuracy[key]:.3f}" for key in keys)]
        cells += [f"{result.agreement[key]:.3f}" for key in onnx_keys]
        cells += [f"{result.min_cosine[key]:.6f}" for key in onnx_keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
