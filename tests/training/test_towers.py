from __future__ import annotations

import pytest

from visionclip.presets import build_model_and_processor
from visionclip.training.towers import lock_tower, tower_blocks


def test_lock_keeps_last_blocks_trainable_and_reports_frozen_batch_norms():
    model, _ = build_model_and_processor("small")
    frozen_norms = lock_tower(model.vision_model, unlocked_blocks=1)
    stages = tower_blocks(model.vision_model)
    assert all(not p.requires_grad for stage in list(stages)[:-1] for p in stage.parameters())
    assert all(p.requires_grad for p in stages[-1].parameters())
    assert not any(p.requires_grad for p in model.vision_model.embedder.parameters())
    assert frozen_norms and not any(n in list(stages[-1].modules()) for n in frozen_norms)
    lock_tower(model.text_model, unlocked_blocks=1)
    layers = tower_blocks(model.text_model)
    assert [any(p.requires_grad for p in layer.parameters()) for layer in layers] == [False, True]
    assert model.visual_projection.weight.requires_grad  # projections are never locked
    with pytest.raises(ValueError, match="has 2"):
        lock_tower(model.text_model, unlocked_blocks=9)


def test_build_model_starts_from_a_pretrained_text_tower_folder(tmp_path):
    from transformers import BertConfig, BertModel

    from visionclip.tokenization import build_knowledge_base_tokenizer
    from visionclip.training.towers import build_model

    tower = BertModel(
        BertConfig(vocab_size=500, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    )
    tower.save_pretrained(tmp_path)
    build_knowledge_base_tokenizer().save_pretrained(tmp_path)
    model, processor = build_model("tiny", None, str(tmp_path))
    assert model.config.projection_dim == 32 and model.zero_shot_tasks  # the preset's projection and tasks
    assert model.config.text_config.vocab_size == 500
    embeddings = model.text_model.embeddings.word_embeddings.weight
    assert embeddings.data_ptr() != tower.embeddings.word_embeddings.weight.data_ptr()
    assert (embeddings == tower.embeddings.word_embeddings.weight).all()  # loaded weights, not a fresh init
