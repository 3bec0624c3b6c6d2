"""visionclip.factory: every way to build or load a model, and the errors for what is none of them."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertModel, ResNetConfig, ResNetModel

from visionclip.factory import build_from_config, build_model, load_model, source_kind
from visionclip.presets import load_preset
from visionclip.tokenization import build_knowledge_base_tokenizer
from visionclip.zeroshot.tasks import recommended_tasks

TINY_RESNET = {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1], "layer_type": "basic"}
TINY_BERT = {"vocab_size": 500, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}


def test_a_preset_builds_offline_with_its_processor_and_the_recommended_tasks():
    model, processor = build_model("tiny")
    assert processor.image_processor.size["height"] == load_preset("tiny").image_size
    assert model.config.text_config.vocab_size == len(processor.tokenizer)
    assert model.zero_shot_tasks == {name: task.to_config() for name, task in recommended_tasks().items()}


def test_build_model_starts_from_a_pretrained_text_tower_folder(tmp_path):
    tower = BertModel(BertConfig(**TINY_BERT, intermediate_size=64))
    tower.save_pretrained(tmp_path)
    build_knowledge_base_tokenizer().save_pretrained(tmp_path)
    model, processor = build_model("tiny", None, str(tmp_path))
    assert model.config.projection_dim == 32 and model.zero_shot_tasks  # the preset's projection and tasks
    assert model.config.text_config.vocab_size == 500
    embeddings = model.text_model.embeddings.word_embeddings.weight
    assert embeddings.data_ptr() != tower.embeddings.word_embeddings.weight.data_ptr()
    assert (embeddings == tower.embeddings.word_embeddings.weight).all()  # loaded weights, not a fresh init


def test_build_model_keeps_the_weights_of_both_pretrained_towers(tmp_path):
    vision = ResNetModel(ResNetConfig(**TINY_RESNET))
    text = BertModel(BertConfig(**TINY_BERT, intermediate_size=64))
    vision.save_pretrained(tmp_path / "vision")
    text.save_pretrained(tmp_path / "text")
    build_knowledge_base_tokenizer().save_pretrained(tmp_path / "text")
    model, _ = build_model("tiny", str(tmp_path / "vision"), str(tmp_path / "text"))
    assert model.config.projection_dim == load_preset("tiny").projection_dim
    for tower, original in ((model.vision_model, vision), (model.text_model, text)):
        loaded = tower.state_dict()
        for name, tensor in original.state_dict().items():
            if name.startswith("pooler."):
                continue  # CLS pooling drops BERT's pooler
            torch.testing.assert_close(loaded[name], tensor, msg=name)


def test_a_tower_that_is_empty_or_missing_errors_clearly(tmp_path):
    with pytest.raises(ValueError, match="vision tower"):
        build_model("tiny", vision_tower="")
    with pytest.raises(OSError):
        build_model("tiny", vision_tower=str(tmp_path / "missing"))


def test_build_from_config_is_the_same_architecture_with_reproducible_new_weights():
    model, _ = build_model("tiny")
    first, second = build_from_config(model.config, seed=3), build_from_config(model.config, seed=3)
    assert first.config.to_dict() == model.config.to_dict()
    for name, tensor in first.state_dict().items():
        torch.testing.assert_close(second.state_dict()[name], tensor, msg=name)
    assert not torch.equal(first.visual_projection.weight, model.visual_projection.weight)


def test_load_model_reads_a_saved_folder_and_a_preset_name(tiny_folder, tiny_model_and_processor):
    model, processor = load_model(str(tiny_folder))
    assert not model.training and processor.tokenizer is not None
    original = tiny_model_and_processor[0].state_dict()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, original[name], msg=name)
    assert source_kind("tiny") == "preset" and not load_model("tiny")[0].training
    assert source_kind(tiny_folder) == "folder" and source_kind("org/model") == "hub"


def test_load_model_reads_a_training_checkpoint_folder(tmp_path):
    """The checkpoint layout of visionclip/training/checkpoint.py: trainer_state.json with the run's configuration,
    and the model's weights named `model.*` beside the loss's in weights.safetensors."""
    trained, _ = build_model("tiny")
    with torch.no_grad():
        trained.logit_scale.fill_(1.25)
    weights = {f"model.{name}": tensor.contiguous() for name, tensor in trained.state_dict().items()}
    save_file({**weights, "loss.bias": torch.zeros(1)}, tmp_path / "weights.safetensors")
    state = {"step": 3, "config": {"preset": "tiny", "vision_tower": None, "text_tower": None}}
    (tmp_path / "trainer_state.json").write_text(json.dumps(state))
    assert source_kind(tmp_path) == "checkpoint"
    model, _ = load_model(tmp_path)
    assert not model.training and model.logit_scale.item() == pytest.approx(1.25)
    for name, tensor in trained.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, msg=name)


def test_what_is_no_model_is_named_in_the_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder, not a preset .*tiny.* and not a Hub id"):
        load_model(str(tmp_path / "missing"))
