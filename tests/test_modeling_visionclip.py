from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from PIL import Image
from safetensors.torch import load_file, save_file

from configuration_visionclip import VisionCLIPConfig
from modeling_visionclip import VisionCLIPModel, clip_loss
from tests.tiny_towers import TINY_LITE, TINY_TEXT, TINY_VISION, tiny_config
from towers_visionclip import hidden_state_widths
from visionclip.presets import load_preset


def batch(n_images: int = 3, n_texts: int = 3, seq: int = 12, size: int = 64):
    generator = torch.Generator().manual_seed(0)
    return {
        "pixel_values": torch.randn(n_images, 3, size, size, generator=generator),
        "input_ids": torch.randint(5, 99, (n_texts, seq), generator=generator),
        "attention_mask": torch.ones(n_texts, seq, dtype=torch.long),
    }


def test_forward_shapes_and_normalised_embeddings():
    model = VisionCLIPModel(tiny_config()).eval()
    out = model(**batch(n_images=3, n_texts=5))
    assert out.logits_per_image.shape == (3, 5)
    assert out.logits_per_text.shape == (5, 3)
    torch.testing.assert_close(out.logits_per_image, out.logits_per_text.t())
    torch.testing.assert_close(out.image_embeds.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(out.text_embeds.norm(dim=-1), torch.ones(5))
    assert out.loss is None
    assert model(**batch(), return_dict=False)[0].shape == (3, 3)


def test_loss_matches_direct_formula():
    model = VisionCLIPModel(tiny_config()).eval()
    out = model(**batch(n_images=4, n_texts=4), return_loss=True)
    logits = model.logit_scale.exp() * out.image_embeds @ out.text_embeds.t()
    image_to_text = -torch.stack([logits[i].log_softmax(-1)[i] for i in range(4)]).mean()
    text_to_image = -torch.stack([logits[:, i].log_softmax(-1)[i] for i in range(4)]).mean()
    torch.testing.assert_close(out.loss, (image_to_text + text_to_image) / 2)
    torch.testing.assert_close(clip_loss(out.logits_per_text), out.loss)


def test_logit_scale_is_clamped_to_maximum():
    model = VisionCLIPModel(tiny_config(logit_scale_max=50.0)).eval()
    with torch.no_grad():
        model.logit_scale.fill_(10.0)  # exp(10) >> 50
    out = model(**batch())
    assert out.logits_per_image.abs().max() <= 50.0 + 1e-4


def test_accepts_token_type_ids_and_truncates_long_text():
    model = VisionCLIPModel(tiny_config()).eval()
    inputs = batch(seq=40)  # the text tower has 24 positions
    inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
    out = model(**inputs)
    truncated = {k: (v[:, :24] if k != "pixel_values" else v) for k, v in inputs.items()}
    torch.testing.assert_close(out.logits_per_image, model(**truncated).logits_per_image)


def test_features_follow_transformers_conventions_and_encode_normalises():
    model = VisionCLIPModel(tiny_config()).eval()
    inputs = batch()
    image_features = model.get_image_features(inputs["pixel_values"])
    text_features = model.get_text_features(inputs["input_ids"], inputs["attention_mask"])
    assert image_features.pooler_output.shape == (3, 16)
    assert text_features.pooler_output.shape == (3, 16)
    encoded = model.encode_image(inputs["pixel_values"])
    torch.testing.assert_close(encoded, torch.nn.functional.normalize(image_features.pooler_output, dim=-1))
    torch.testing.assert_close(model.encode_text(inputs["input_ids"]).norm(dim=-1), torch.ones(3))


@pytest.mark.parametrize("pooling", ["cls", "mean", "pooler"])
def test_text_pooling_modes(pooling):
    model = VisionCLIPModel(tiny_config(text_pooling=pooling)).eval()
    assert (getattr(model.text_model, "pooler", None) is not None) == (pooling == "pooler")
    inputs = batch()
    padded = dict(inputs)
    padded["input_ids"] = torch.cat([inputs["input_ids"], torch.zeros(3, 4, dtype=torch.long)], dim=1)
    padded["attention_mask"] = torch.cat([inputs["attention_mask"], torch.zeros(3, 4, dtype=torch.long)], dim=1)
    # padding must not change a caption's embedding
    torch.testing.assert_close(
        model.encode_text(inputs["input_ids"], inputs["attention_mask"]),
        model.encode_text(padded["input_ids"], padded["attention_mask"]),
        atol=1e-5,
        rtol=1e-5,
    )


@pytest.mark.parametrize(
    "vision_config",
    [
        TINY_LITE,
        {"model_type": "convnext", "hidden_sizes": [8, 16], "depths": [1, 1], "num_stages": 2},
        {
            "model_type": "vit",
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "image_size": 64,
            "patch_size": 16,
        },
    ],
    ids=["efficientnet-lite", "convnext", "vit"],
)
def test_other_vision_towers(vision_config):
    model = VisionCLIPModel(tiny_config(vision_config=vision_config)).eval()
    out = model(**batch(), return_loss=True)
    assert out.logits_per_image.shape == (3, 3) and torch.isfinite(out.loss)


def test_an_efficientnet_lite_tower_has_exact_frozen_identity_squeeze_excitation_after_saving(tmp_path):
    model = VisionCLIPModel(tiny_config(vision_config=TINY_LITE))
    assert model.vision_embed_dim == TINY_LITE["hidden_dim"]  # EfficientNet's head width, its pooled features
    model.save_pretrained(tmp_path)
    for loaded in (model, VisionCLIPModel.from_pretrained(tmp_path)):
        for block in loaded.vision_model.encoder.blocks:
            layer = block.squeeze_excite
            assert not any(parameter.requires_grad for parameter in layer.parameters())
            hidden = torch.randn(2, layer.dim, 4, 4)
            assert torch.equal(layer(hidden), hidden)


def _loss_and_grads(model: VisionCLIPModel, inputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = model(**inputs, return_loss=True).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing_enable` is deprecated")
@pytest.mark.parametrize("vision", ["resnet", "efficientnet", "vit"])
def test_gradient_checkpointing_gives_same_loss_gradients_and_batch_norm_statistics(vision):
    text = {**TINY_TEXT, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    vision_config = (
        {"resnet": TINY_VISION, "efficientnet": TINY_LITE}[vision]
        if vision != "vit"
        else {
            "model_type": "vit",
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "image_size": 64,
            "patch_size": 16,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
        }
    )
    model = VisionCLIPModel(tiny_config(vision_config=vision_config, text_config=text)).train()
    inputs = batch()
    reference = copy.deepcopy(model)
    loss_plain, grads_plain = _loss_and_grads(reference, inputs)

    model.gradient_checkpointing_enable()
    calls = []
    # a pre-hook inside the checkpointed block: checkpoints wrap `forward`, and recomputation may stop early
    vision_model = model.vision_model
    first_block = {
        "resnet": lambda: vision_model.encoder.stages[0].layers[0],
        "efficientnet": lambda: vision_model.encoder.blocks[0].depthwise_conv,
        "vit": lambda: vision_model.layers[0].layernorm_before,
    }[vision]()
    handle = first_block.register_forward_pre_hook(lambda *args: calls.append(1))
    loss_ckpt, grads_ckpt = _loss_and_grads(model, inputs)
    handle.remove()
    assert len(calls) == 2, "checkpointed block should run again during backward"
    torch.testing.assert_close(loss_ckpt, loss_plain)
    assert grads_ckpt.keys() == grads_plain.keys()
    for name in grads_plain:
        torch.testing.assert_close(grads_ckpt[name], grads_plain[name], atol=1e-5, rtol=1e-4, msg=name)
    # the recomputation in backward normalises with the batch's statistics but must not count them a second time
    for (name, buffer), expected in zip(model.named_buffers(), reference.buffers(), strict=True):
        torch.testing.assert_close(buffer, expected, msg=name)

    model.gradient_checkpointing_disable()
    calls.clear()
    handle = first_block.register_forward_pre_hook(lambda *args: calls.append(1))
    _loss_and_grads(model, inputs)
    handle.remove()
    assert len(calls) == 1


def test_bfloat16_load_runs_forward(tmp_path):
    VisionCLIPModel(tiny_config()).save_pretrained(tmp_path)
    model = VisionCLIPModel.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert model.visual_projection.weight.dtype == torch.bfloat16
    out = model(**batch())  # float32 pixels are cast to the tower's dtype
    assert out.logits_per_image.dtype == torch.bfloat16 and torch.isfinite(out.logits_per_image.float()).all()


def test_loading_initialises_missing_parameters_and_buffers(tmp_path):
    model = VisionCLIPModel(tiny_config(logit_scale_init_value=1.5))
    with torch.no_grad():
        model.logit_scale.fill_(3.0)
    model.save_pretrained(tmp_path)
    loaded = VisionCLIPModel.from_pretrained(tmp_path)
    assert loaded.logit_scale.item() == pytest.approx(3.0)
    positions = loaded.text_model.embeddings.position_ids  # a non-persistent buffer
    torch.testing.assert_close(positions, torch.arange(positions.shape[-1]).expand(1, -1))

    weights = load_file(tmp_path / "model.safetensors")
    del weights["logit_scale"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    assert VisionCLIPModel.from_pretrained(tmp_path).logit_scale.item() == pytest.approx(1.5)


def test_zero_shot_tasks_and_free_form_classes(tiny_model_and_processor, real_photos):
    model, processor = tiny_model_and_processor
    photos = real_photos[:3]
    for task, spec in model.zero_shot_tasks.items():
        result = model.zero_shot(photos, processor=processor, task=task)
        assert result.class_names == spec["classes"]
        assert result.probs.shape == (3, len(spec["classes"]))
        torch.testing.assert_close(result.probs.sum(-1), torch.ones(3))
        assert all(p in spec["classes"] for p in result.predictions)
    free = model.zero_shot(photos[0], processor=processor, class_names=["cataract", "no cataract"])
    assert free.class_names == ["cataract", "no cataract"] and free.task is None
    pixel_values = processor.image_processor(photos, return_tensors="pt")["pixel_values"]
    by_tensor = model.zero_shot(pixel_values, processor=processor, task="glaucoma")
    torch.testing.assert_close(by_tensor.probs, model.zero_shot(photos, processor=processor, task="glaucoma").probs)


def test_zero_shot_prompt_ensemble_is_mean_of_normalised_prompts(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    prompts = model.class_prompts(task="amd")
    classifier = model.zero_shot_classifier(prompts, processor.tokenizer)
    for row, class_prompts in zip(classifier, prompts.values(), strict=True):
        tokens = processor.tokenizer(class_prompts, padding=True, return_tensors="pt")
        with torch.no_grad():
            mean = model.encode_text(tokens["input_ids"], tokens["attention_mask"]).mean(0)
        torch.testing.assert_close(row, mean / mean.norm())


def test_zero_shot_errors_name_the_problem(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    with pytest.raises(ValueError, match="Unknown zero-shot task 'cataract'"):
        model.zero_shot([], processor=processor, task="cataract")
    with pytest.raises(ValueError, match="exactly one"):
        model.zero_shot([], processor=processor)
    with pytest.raises(ValueError, match="at least two distinct"):
        model.zero_shot([], processor=processor, class_names=["glaucoma"])
    with pytest.raises(ValueError, match="processor"):
        model.zero_shot([], processor=None, task="amd")


@pytest.mark.parametrize(
    ("class_names", "message"),
    [
        ("amd", r"a list of class names, not the string 'amd'.*task="),
        (["glaucoma", ""], "class name '' is empty"),
        (["glaucoma", "   "], "class name '   ' is empty"),
        (["glaucoma", None], "class name None is not a string"),
        (["glaucoma", 3], "class name 3 is not a string"),
        ([], "at least two distinct"),
        (["glaucoma", "glaucoma "], "at least two distinct"),
    ],
    ids=["string", "empty", "blank", "none", "number", "no-names", "same-after-strip"],
)
def test_free_form_class_names_are_validated(tiny_model_and_processor, real_photos, class_names, message):
    model, processor = tiny_model_and_processor
    with pytest.raises(ValueError, match=message):
        model.class_prompts(class_names=class_names)
    with pytest.raises(ValueError, match=message):
        model.zero_shot(real_photos[:1], processor, class_names=class_names)


def _pixel_values(processor, photos) -> torch.Tensor:
    return processor.image_processor(photos, return_tensors="pt")["pixel_values"]


@pytest.mark.parametrize(
    ("make_images", "batch_size", "message"),
    [
        (lambda processor, photos: [], 8, "no images"),
        (lambda processor, photos: _pixel_values(processor, photos)[:0], 8, "no images"),
        (lambda processor, photos: photos, 0, "batch_size must be a positive integer, got 0"),
        (lambda processor, photos: photos, -1, "batch_size must be a positive integer, got -1"),
        (lambda processor, photos: photos, 2.5, "batch_size must be a positive integer, got 2.5"),
        (lambda processor, photos: _pixel_values(processor, photos)[0], 8, r"\(N, 3, H, W\).*unsqueeze\(0\)"),
        (
            lambda processor, photos: (_pixel_values(processor, photos) * 0 + 200).to(torch.uint8),
            8,
            "integers.*raw pixels",
        ),
        (lambda processor, photos: torch.full((1, 3, 64, 64), 200.0), 8, "outside the range.*raw pixels"),
        (lambda processor, photos: torch.full((1, 64, 64, 3), -1.0), 8, r"\(N, 3, H, W\)"),
    ],
    ids=["empty-list", "empty-tensor", "batch-0", "batch-minus-1", "batch-float", "3d", "uint8", "0-255", "nhwc"],
)
def test_zero_shot_inputs_are_validated(tiny_model_and_processor, real_photos, make_images, batch_size, message):
    model, processor = tiny_model_and_processor
    images = make_images(processor, real_photos[:2])
    with pytest.raises(ValueError, match=message):
        model.zero_shot(images, processor, task="glaucoma", batch_size=batch_size)


def test_zero_shot_takes_raw_image_tensors_in_a_list(tiny_model_and_processor, real_photos):
    model, processor = tiny_model_and_processor
    photo = np.array(Image.open(real_photos[0]).convert("RGB"))
    from_path = model.zero_shot(real_photos[:1], processor, task="glaucoma").probs
    for raw in (torch.from_numpy(photo), torch.from_numpy(photo).permute(2, 0, 1).contiguous()):
        torch.testing.assert_close(model.zero_shot([raw], processor, task="glaucoma").probs, from_path)


def test_config_validation_and_round_trip():
    config = tiny_config(
        text_pooling="mean", zero_shot_tasks={"t": {"classes": ["a", "b"], "prompts": [["a"], ["b"]]}}
    )
    again = VisionCLIPConfig.from_dict(config.to_dict())
    assert again.vision_config.model_type == "resnet" and again.text_config.hidden_size == 32
    assert again.zero_shot_tasks == config.zero_shot_tasks and again.text_pooling == "mean"
    with pytest.raises(ValueError, match="projection_dim"):
        tiny_config(projection_dim=0)
    with pytest.raises(ValueError, match="exactly once"):
        tiny_config(prompt_templates=["no placeholder"])
    default = VisionCLIPConfig()
    assert default.vision_config.hidden_sizes[-1] == 2048 and default.text_config.vocab_size == 28996


def test_flair_reference_preset_shapes_match_the_paper():
    preset = load_preset("flair-reference")
    config = preset.build_config(vocab_size=500)
    assert (config.vision_config.depths, config.vision_config.layer_type) == ([3, 4, 6, 3], "bottleneck")
    assert (config.text_config.hidden_size, config.text_config.num_hidden_layers) == (768, 12)
    assert config.text_config.vocab_size == 28996  # Bio_ClinicalBERT's, so its weights load into this shape
    assert (config.projection_dim, preset.image_size, config.logit_scale_max) == (512, 512, 100.0)
    with torch.device("meta"):
        model = VisionCLIPModel(config)
    assert 100e6 < model.num_parameters() < 140e6  # ResNet-50 (23.5M) + BERT-base (108M) + projections


def test_inference_in_channels_last_matches_training_layout():
    model = VisionCLIPModel(tiny_config()).eval()
    pixels = batch()["pixel_values"]
    with_grad = model.encode_image(pixels).detach()
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(pixels), with_grad, atol=1e-5, rtol=1e-4)


def captions_of_lengths(lengths: list[int], width: int) -> dict[str, torch.Tensor]:
    """Right-padded token ids with these lengths, padded to `width` (as the tokenizer pads a batch)."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 99, (len(lengths), width), generator=generator)
    mask = (torch.arange(width) < torch.tensor(lengths)[:, None]).long()
    return {"input_ids": ids * mask, "attention_mask": mask}


@pytest.mark.parametrize("pooling", ["cls", "mean", "pooler"])
def test_length_groups_give_the_padded_batchs_embeddings_and_gradients(pooling: str):
    torch.manual_seed(0)
    model = VisionCLIPModel(tiny_config(text_pooling=pooling)).eval()  # eval: no dropout, so runs are comparable
    text = captions_of_lengths([3, 17, 5, 24, 9, 2, 11, 6], width=24)

    def run(groups: int):
        model.zero_grad()
        output = model.get_text_features(**text, length_groups=groups)
        output.pooler_output.square().sum().backward()
        grads = {name: p.grad.clone() for name, p in model.text_model.named_parameters() if p.grad is not None}
        return output, grads

    whole, whole_grads = run(1)
    grouped, grouped_grads = run(4)
    torch.testing.assert_close(grouped.pooler_output, whole.pooler_output, atol=1e-5, rtol=1e-4)
    real = text["attention_mask"].bool()
    torch.testing.assert_close(grouped.last_hidden_state[real], whole.last_hidden_state[real], atol=1e-5, rtol=1e-4)
    assert grouped_grads.keys() == whole_grads.keys()
    for name, grad in whole_grads.items():
        torch.testing.assert_close(grouped_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_length_groups_cut_each_group_to_its_longest_text(monkeypatch):
    model = VisionCLIPModel(tiny_config()).eval()
    widths = []
    original = type(model.text_model).forward

    def recording(self, input_ids=None, **kwargs):
        widths.append(tuple(input_ids.shape))
        return original(self, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(type(model.text_model), "forward", recording)
    model.get_text_features(**captions_of_lengths([3, 17, 5, 24, 9, 2, 11, 6], width=24), length_groups=4)
    assert widths == [(2, 3), (2, 6), (2, 11), (2, 24)]
    widths.clear()
    left_padded = {key: value.flip(1) for key, value in captions_of_lengths([3, 17, 5, 24], width=24).items()}
    model.get_text_features(**left_padded, length_groups=2)  # left padding: not cut, one padded batch
    assert widths == [(4, 24)]
    widths.clear()
    model.get_text_features(**captions_of_lengths([3, 17, 5], width=24), length_groups=2)  # too few texts
    assert widths == [(3, 24)]


def test_forward_passes_text_length_groups_on():
    torch.manual_seed(0)
    model = VisionCLIPModel(tiny_config()).eval()
    inputs = {**batch(n_images=8, n_texts=8), **captions_of_lengths([3, 17, 5, 24, 9, 2, 11, 6], width=24)}
    torch.testing.assert_close(
        model(**inputs, text_length_groups=4).logits_per_image, model(**inputs).logits_per_image, atol=1e-4, rtol=1e-4
    )


CONVNEXT_TINY = {"model_type": "convnext", "hidden_sizes": [8, 16], "depths": [1, 1], "num_stages": 2}


@pytest.mark.parametrize("vision_config", [TINY_LITE, TINY_VISION, CONVNEXT_TINY], ids=["lite", "resnet", "convnext"])
def test_hidden_state_widths_are_what_each_cnn_tower_returns(vision_config):
    model = VisionCLIPModel(tiny_config(vision_config=vision_config)).eval()
    with torch.no_grad():
        hidden = model.vision_model(torch.randn(1, 3, 64, 64), output_hidden_states=True).hidden_states
    assert hidden_state_widths(model.config.vision_config) == [state.shape[1] for state in hidden]


@pytest.mark.parametrize("vision_config", [TINY_LITE, TINY_VISION], ids=["lite", "resnet"])
def test_vision_feature_layers_project_the_averages_of_the_chosen_hidden_states(vision_config, tmp_path):
    model = VisionCLIPModel(tiny_config(vision_config=vision_config, vision_feature_layers=[-2, -1])).eval()
    pixel_values = batch()["pixel_values"]
    with torch.no_grad():
        hidden = model.vision_model(pixel_values, output_hidden_states=True).hidden_states
        expected = model.visual_projection(torch.cat([hidden[-2].mean((2, 3)), hidden[-1].mean((2, 3))], dim=1))
        embeds = model.get_image_features(pixel_values).pooler_output
    assert model.vision_embed_dim == hidden[-2].shape[1] + hidden[-1].shape[1]
    torch.testing.assert_close(embeds, expected)

    model.save_pretrained(tmp_path)
    loaded = VisionCLIPModel.from_pretrained(tmp_path).eval()
    assert loaded.config.vision_feature_layers == [-2, -1]
    with torch.no_grad():
        torch.testing.assert_close(loaded.get_image_features(pixel_values).pooler_output, embeds)


@pytest.mark.parametrize("layers", [[], [1, 1], ["1"], 2, [True]])
def test_bad_vision_feature_layers_are_refused(layers):
    with pytest.raises((ValueError, StrictDataclassError), match="vision_feature_layers"):  # a non-list: hub's check
        tiny_config(vision_feature_layers=layers)


def test_vision_feature_layers_out_of_range_or_on_a_transformer_are_named():
    with pytest.raises(ValueError, match=r"\[7\] name hidden states the resnet tower does not have: it returns 3"):
        VisionCLIPModel(tiny_config(vision_feature_layers=[7]))
    with pytest.raises(ValueError, match=r"\[-1, 2\] name one hidden state twice"):
        VisionCLIPModel(tiny_config(vision_feature_layers=[-1, 2]))
    vit = {"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
           "intermediate_size": 64, "image_size": 64, "patch_size": 16}  # fmt: skip
    with pytest.raises(ValueError, match="needs a CNN tower .* the vision tower is 'vit'"):
        VisionCLIPModel(tiny_config(vision_config=vit, vision_feature_layers=[-1]))
