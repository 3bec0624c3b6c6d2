"""A model and processor that can `explain`, from any source `visionclip.factory.load_model` reads."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path

from transformers import AutoTokenizer

from image_processing_visionclip import VisionCLIPImageProcessor
from modeling_visionclip import VisionCLIPModel
from processing_visionclip import VisionCLIPProcessor

from ..factory import load_model, source_kind


def can_explain(model, processor, options: Sequence[str] = ()) -> bool:
    """Whether this model's code has `explain`, taking the keyword `options` (e.g. `"upscale"`), and its image
    processor reports the geometry explain needs."""
    if not hasattr(model, "explain") or not hasattr(processor.image_processor, "prepare_image_with_geometry"):
        return False
    return set(options) <= set(inspect.signature(model.explain).parameters)


def load_explainable(source: str | Path, options: Sequence[str] = ()) -> tuple[VisionCLIPModel, VisionCLIPProcessor]:
    """`load_model(source)`; a saved folder whose remote code predates `explain` (or its keyword `options`) is
    loaded with this checkout's classes instead (same weights and settings), with a note."""
    model, processor = load_model(source)
    if can_explain(model, processor, options):
        return model, processor
    if source_kind(source) not in ("folder", "hub"):
        raise ValueError(f"{source}: this model's code has no explain({', '.join(options)})")
    wanted = f"explain({', '.join(options)})" if options else "explain()"
    print(f"note: {source}'s saved code predates {wanted}; loading its weights with this checkout's model code")
    model = VisionCLIPModel.from_pretrained(str(source)).eval()
    image_processor = VisionCLIPImageProcessor.from_pretrained(str(source))
    tokenizer = AutoTokenizer.from_pretrained(str(source), trust_remote_code=True)
    return model, VisionCLIPProcessor(image_processor, tokenizer)


def upscale_keywords(upscale: int) -> dict[str, int]:
    """`explain`'s keywords for a grid `upscale` times finer: none at 1, so that a saved model whose code predates
    `upscale` still explains at the default (load it with `load_explainable(source, list(these keywords))`)."""
    return {} if upscale == 1 else {"upscale": upscale}
