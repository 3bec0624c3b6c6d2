"""Processor for VisionCLIP: the fundus image processor and the text tokenizer behind one call."""

from transformers.processing_utils import ProcessorMixin


class VisionCLIPProcessor(ProcessorMixin):
    r"""
    Wraps a [`VisionCLIPImageProcessor`] and a tokenizer. `processor(images=..., text=...)` returns
    `pixel_values` `(batch, 3, H, W)` and the tokenizer outputs (`input_ids`, `attention_mask`, ...).
    Text is padded and truncated to the tokenizer's `model_max_length` unless told otherwise.
    """

    text_kwargs = {"padding": True, "truncation": True}

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        super().__init__(image_processor, tokenizer, **kwargs)


VisionCLIPProcessor.register_for_auto_class("AutoProcessor")

__all__ = ["VisionCLIPProcessor"]
