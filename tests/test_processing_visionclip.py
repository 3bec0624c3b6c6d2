from __future__ import annotations

import torch

from processing_visionclip import VisionCLIPProcessor


def test_processor_returns_pixels_and_tokens(tiny_model_and_processor, real_photos):
    _, processor = tiny_model_and_processor
    inputs = processor(
        images=real_photos[:2], text=["glaucoma", "a normal fundus with a healthy optic disc"], return_tensors="pt"
    )
    assert inputs["pixel_values"].shape == (2, 3, 64, 64)
    assert inputs["input_ids"].shape == inputs["attention_mask"].shape
    assert inputs["input_ids"].shape[0] == 2  # padded to one length


def test_text_is_truncated_to_the_tower_by_default(tiny_model_and_processor):
    _, processor = tiny_model_and_processor
    long_text = "haemorrhages " * 200
    assert processor(text=[long_text], return_tensors="pt")["input_ids"].shape[1] == 64


def test_processor_round_trip(tmp_path, tiny_model_and_processor, real_photos):
    _, processor = tiny_model_and_processor
    processor.save_pretrained(tmp_path)
    reloaded = VisionCLIPProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    a = processor(images=real_photos[:1], text=["drusen"], return_tensors="pt")
    b = reloaded(images=real_photos[:1], text=["drusen"], return_tensors="pt")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key])
