"""A model and processor that can `explain`, from any source `visionclip.factory.load_model` reads."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from image_processing_visionclip import VisionCLIPImageProcessor
from modeling_visionclip import VisionCLIPModel
from processing_visionclip import VisionCLIPProcessor

from ..factory import load_model, source_kind


def can_explain(model, processor) -> bool:
    """Whether this model's code has `explain` and its image processor reports the geometry explain needs."""
    return hasattr(model, "explain") and hasattr(processor.image_processor, "prepare_image_with_geometry")


def load_explainable(source: str | Path) -> tuple[VisionCLIPModel, VisionCLIPProcessor]:
    """`load_model(source)`; a saved folder whose remote code predates `explain` is loaded with this checkout's
    classes instead (same weights and settings), with a note."""
    model, processor = load_model(source)
    if can_explain(model, processor):
        return model, processor
    if source_kind(source) not in ("folder", "hub"):
        raise ValueError(f"{source}: this model's code has no explain()")
    print(f"note: {source}'s saved code predates explain(); loading its weights with this checkout's model code")
    model = VisionCLIPModel.from_pretrained(str(source)).eval()
    image_processor = VisionCLIPImageProcessor.from_pretrained(str(source))
    tokenizer = AutoTokenizer.from_pretrained(str(source), trust_remote_code=True)
    return model, VisionCLIPProcessor(image_processor, tokenizer)
