"""The zero-shot engine: files read by DataLoader workers and images kept in memory give the same embeddings;
finding questions are scored only where both sides have enough images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visionclip.zeroshot.data import EvalItem
from visionclip.zeroshot.engine import ImageCache, binary_auroc, embed_images
from visionclip.zeroshot.tasks import finding_tasks


@pytest.fixture(scope="module")
def photos(real_photos):
    return real_photos[:24]


def test_images_from_files_and_from_the_memory_cache_embed_alike(tiny_model_and_processor, photos):
    model, processor = tiny_model_and_processor
    from_files = embed_images(model, processor.image_processor, [EvalItem(p.name, p, 0) for p in photos], 5)
    cache = ImageCache(processor.image_processor, batch_size=7)
    for path in photos:
        cache.add(path)
    assert len(cache) == len(photos)
    torch.testing.assert_close(cache.embed(model), from_files.vectors)


def test_a_finding_question_is_measured_only_with_enough_images_on_both_sides(tiny_model_and_processor, photos):
    model, processor = tiny_model_and_processor
    vectors = embed_images(model, processor.image_processor, [EvalItem(p.name, p, 0) for p in photos]).vectors
    question = next(task for task in finding_tasks() if task.name == "glaucoma")
    present = np.arange(len(photos)) % 2 == 0
    measured = binary_auroc(model, processor.tokenizer, question, vectors, present)
    assert measured["positives"] == measured["negatives"] == len(photos) // 2 and 0 <= measured["auroc"] <= 1
    assert binary_auroc(model, processor.tokenizer, question, vectors[:12], present[:12])["auroc"] is None
