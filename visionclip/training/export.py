"""The Hub-ready folder a training run ends with: weights, code, processor, prompts, examples and a model card."""

from __future__ import annotations

import json
import shutil
from itertools import chain
from pathlib import Path
from typing import Any

import torch
import yaml
from PIL import Image
from torch import nn

from image_processing_visionclip import load_fundus_image

from ..cards import RESULTS_FILE, render_model_card
from ..hub import add_endpoint_handler
from ..shards import replace_folder
from ..streaming import open_parquet_stream
from .config import TrainConfig

EXAMPLES = {"glaucoma": "is_gc", "diabetic_retinopathy": "dr_grade", "normal": None}


def pick_examples(files: list[str], limit: int = 2000) -> dict[str, Image.Image]:
    """One held-out synthetic image per example name: with glaucoma, with DR grade >= 2, and without findings."""
    found: dict[str, Image.Image] = {}
    for row in open_parquet_stream(files).take(limit):
        grade, abnormal, readable = row["dr_grade"], row["is_abnormal"], row["is_retinal_region_readable"]
        wanted = (
            "glaucoma"
            if row["is_gc"] and not grade
            else "diabetic_retinopathy"
            if grade >= 2 and not row["is_gc"]
            else "normal"
            if not abnormal and readable
            else None
        )
        if wanted and wanted not in found:
            found[wanted] = load_fundus_image(row["image"])
        if len(found) == len(EXAMPLES):
            break
    return found


def non_finite_tensors(model: nn.Module) -> list[str]:
    """Names of the parameters and buffers (batch-norm statistics included) that hold NaN or infinity."""
    tensors = chain(model.named_parameters(), model.named_buffers())
    return [name for name, tensor in tensors if tensor.is_floating_point() and not torch.isfinite(tensor).all()]


def export_model(trainer, results: dict[str, Any], summary: str) -> Path:
    """Write `<output_dir>/model` atomically: build it in `model.tmp` (removed again if that fails), fsync its
    files and folders, swap it in, and fsync the output folder. Refuse a model with non-finite weights or
    statistics, whose every prediction would be NaN."""
    config: TrainConfig = trainer.config
    output = Path(config.output_dir)
    final, temporary = output / "model", output / "model.tmp"
    broken = non_finite_tensors(trainer.unwrapped)
    if broken:
        raise ValueError(
            f"not exporting {final}: {len(broken)} tensor(s) of the trained model hold NaN or infinity, so every "
            f"prediction would be NaN: {', '.join(broken[:8])}{' ...' if len(broken) > 8 else ''}"
        )
    if temporary.exists():
        shutil.rmtree(temporary)
    try:
        _write_model_folder(temporary, trainer, results, summary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    replace_folder(temporary, final)
    return final


def _write_model_folder(folder: Path, trainer, results: dict[str, Any], summary: str, final: Path) -> None:
    config: TrainConfig = trainer.config
    model, processor = trainer.unwrapped, trainer.processor
    model.config.training_objective = config.objective  # read by eval_zeroshot.py: zero-shot needs a trained text side
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    add_endpoint_handler(folder)
    (folder / "training_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    (folder / RESULTS_FILE).write_text(
        json.dumps({"training_summary": summary, "held_out_synthetic": results}, indent=2)
    )
    (folder / "examples").mkdir()
    for name, image in pick_examples(trainer.held_out_files()).items():
        image.save(folder / "examples" / f"{name}.png")
    card = render_model_card(folder, model_path=str(final.resolve()))
    card.save(folder / "README.md")
