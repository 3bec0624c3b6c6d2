"""The Hub-ready folder of a fine-tuned `VisionCLIPForImageClassification`, written atomically, and its card."""

from __future__ import annotations

import csv
import io
import json
import shutil
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData

import modeling_visionclip

from ..cards import RESULTS_FILE
from ..hub import CONFUSION_MATRIX_FILE as CONFUSION_FILE
from ..hub import HUB_CODE_FILES
from ..shards import replace_folder
from ..synthetic.labels import resolve_prevalence
from ..synthetic.writer import SampleMaker
from ..zeroshot.report import markdown_table, model_index, per_class_table, plot_confusion
from .data import LabelledImages
from .run import FinetuneResult

PREDICTIONS_FILE = "predictions.csv"
CODE_ROOT = Path(modeling_visionclip.__file__).parent


def non_finite_tensors(model: torch.nn.Module) -> list[str]:
    """Names of the parameters and buffers that hold NaN or infinity (as training's export checks; the library
    layer may not import training)."""
    tensors = chain(model.named_parameters(), model.named_buffers())
    return [name for name, tensor in tensors if tensor.is_floating_point() and not torch.isfinite(tensor).all()]


def results_entry(result: FinetuneResult, data: LabelledImages, about: dict[str, Any]) -> dict[str, Any]:
    """The cross-validated entry, in the form of `eval_zeroshot.py`'s results (so its tables render it)."""
    return {
        **about,
        "labels": list(data.classes),
        "metrics": result.metrics,
        "zero_shot_metrics": result.zero_shot_metrics,
        "unreadable": [{"image": image, "error": error} for image, error in data.skipped],
    }


def predictions_csv(result: FinetuneResult, data: LabelledImages) -> str:
    """Per image: label, fold, the out-of-fold prediction, and the saved classifier's prediction and scores."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["file", "label", "fold", "out_of_fold_prediction", "prediction", *(f"score_{c}" for c in data.classes)]
    )
    for index, item in enumerate(data.items):
        writer.writerow(
            [
                item.id,
                data.classes[data.labels[index]],
                int(result.folds[index]),
                data.classes[int(result.out_of_fold[index].argmax())],
                data.classes[int(result.final[index].argmax())],
                *(f"{value:.6f}" for value in result.final[index]),
            ]
        )
    return buffer.getvalue()


def export_classifier(
    output: Path, result: FinetuneResult, data: LabelledImages, image_processor, entry: dict[str, Any], base: str
) -> Path:
    """Write `output` atomically: built in `<output>.tmp` (removed again if anything fails), fsynced, then swapped
    in. A classifier with NaN or infinite weights is refused before anything is written."""
    broken = non_finite_tensors(result.classifier)
    if broken:
        raise ValueError(f"not exporting {output}: tensors hold NaN or infinity: {', '.join(broken[:8])}")
    temporary = output.with_name(output.name + ".tmp")
    if temporary.exists():
        shutil.rmtree(temporary)
    try:
        temporary.mkdir(parents=True)
        result.classifier.save_pretrained(temporary)
        image_processor.save_pretrained(temporary)
        for name in HUB_CODE_FILES:
            shutil.copyfile(CODE_ROOT / name, temporary / name)
        (temporary / RESULTS_FILE).write_text(json.dumps({"finetune": entry}, indent=2))
        (temporary / PREDICTIONS_FILE).write_text(predictions_csv(result, data))
        plot_confusion(entry, temporary / CONFUSION_FILE)
        _write_examples(temporary / "examples", base)
        (temporary / "README.md").write_text(str(render_classifier_card(temporary, str(output.resolve()))))
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    replace_folder(temporary, output)
    return output


def _write_examples(folder: Path, base: str) -> None:
    """The base model's synthetic examples where it has them, else one generated image: never a training image,
    which may be a patient's photograph."""
    folder.mkdir()
    shipped = sorted((Path(base) / "examples").glob("*.png")) if Path(base).is_dir() else []
    for path in shipped:
        shutil.copyfile(path, folder / path.name)
    if not shipped:
        maker = SampleMaker(512, 1, tuple(sorted(resolve_prevalence().items())))
        (folder / "synthetic_fundus.png").write_bytes(maker.sample("evaluation", 0).png)


def is_classifier_folder(folder: Path) -> bool:
    """Whether a saved folder holds a `VisionCLIPForImageClassification` (its config names the architecture)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return "VisionCLIPForImageClassification" in (config.get("architectures") or [])


def render_classifier_card(folder: Path, model_path: str) -> ModelCard:
    """The model card of a classifier folder, from its config and the cross-validated results it holds."""
    config = json.loads((folder / "config.json").read_text())
    entry = json.loads((folder / RESULTS_FILE).read_text())["finetune"]
    examples = sorted((folder / "examples").glob("*.png"))
    classes = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    card_data = ModelCardData(
        license=entry.get("license") or "other",
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=["visionclip", "fundus", "ophthalmology", "image-classification", "custom_code"],
        metrics=["roc_auc", "accuracy", "f1", "cohen_kappa"],
        base_model=[entry["base_model"]] if str(entry["base_model"]).count("/") == 1 else None,
        model_name=entry["model"],
        eval_results=[EvalResult(**result) for result in model_index([entry], entry["model"])] or None,
    )
    start = dict(entry, mode="zero-shot (before training)", metrics=entry["zero_shot_metrics"])
    matrix = np.asarray(entry["metrics"]["confusion_matrix"])
    rows = "\n".join(f"| {name} | " + " | ".join(str(v) for v in matrix[i]) + " |" for i, name in enumerate(classes))
    skipped = entry.get("unreadable") or []
    body = f"""
# VisionCLIP classifier: {entry["dataset"]}

A `VisionCLIPForImageClassification` ({", ".join(classes)}) fine-tuned with `finetune.py` from the VisionCLIP model
`{entry["base_model"]}` in mode `{entry["mode"]}`. Research use only: not a medical device, not for diagnosis.

```python
import os

from huggingface_hub import snapshot_download
from transformers import AutoModelForImageClassification, pipeline

MODEL = "{model_path}"
model = AutoModelForImageClassification.from_pretrained(MODEL, trust_remote_code=True)
classifier = pipeline("image-classification", model=MODEL, trust_remote_code=True)
folder = MODEL if os.path.isdir(MODEL) else snapshot_download(MODEL)
image = os.path.join(folder, "examples/{examples[0].name if examples else "fundus.png"}")  # a synthetic example
print(classifier(image))
```

## Training data

{entry.get("data_description") or entry["source"]}

Licence of the training images: {entry.get("data_license") or "not stated"}.
{f"{len(skipped)} unreadable rows were skipped (listed in `{RESULTS_FILE}`)." if skipped else ""}

## Evaluation

{entry["evaluated_on"]}. Metrics with 95% bootstrap confidence intervals in brackets; the zero-shot row is the
base model's prompt ensembles on the same images.

{markdown_table([entry, start])}

{per_class_table(entry)}

Confusion matrix of the out-of-fold predictions (rows: true class, columns: predicted; `{CONFUSION_FILE}`):

| true \\ predicted | {" | ".join(classes)} |
|---|{"---|" * len(classes)}
{rows}

## Training procedure

```
{entry["command"]}
```

Options: `{json.dumps(entry["options"])}`. The saved classifier was trained on every image with the same options.
"""
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}")
