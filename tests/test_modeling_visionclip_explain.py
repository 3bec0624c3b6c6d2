"""`VisionCLIPModel.explain`: heatmaps known exactly on a hand-built tower, mapped back onto non-square, cropped
and padded inputs, for every supported tower, and from a saved folder in a fresh process."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from configuration_visionclip import VisionCLIPConfig
from image_processing_visionclip import VisionCLIPImageProcessor, find_field_of_view
from modeling_visionclip import VisionCLIPModel
from processing_visionclip import VisionCLIPProcessor
from tests.hub_user import run_as_hub_user

CANVAS = 64
STRIDE = 4  # the hand-built tower: a stride-2 convolution and a stride-2 max-pool
TEXT = {
    "model_type": "bert",
    "vocab_size": 390,  # the tiny preset's tokenizer
    "hidden_size": 8,
    "num_hidden_layers": 1,
    "num_attention_heads": 1,
    "intermediate_size": 8,
    "max_position_embeddings": 32,
}
DOT, BACKGROUND = "dot", "background"


class KnownTexts:
    """Stands in for the text side: "dot" embeds as e0, "background" as e1 (the image side is under test)."""

    def __call__(self, class_prompts: dict[str, list[str]], tokenizer) -> torch.Tensor:
        rows = {DOT: [1.0, 0.0], BACKGROUND: [0.0, 1.0]}
        return torch.tensor([rows[name] for name in class_prompts])


def hand_built_model() -> VisionCLIPModel:
    """A ResNet whose features at each position are (blue brightness, 1): channel 0 is the ReLU of the normalised
    blue value at the stride-2 sample (max-pooled), channel 1 a constant; the projection is the identity. The
    cosine with e0 is therefore d / sqrt(1 + d^2): 0 where there is no blue, high on a white dot."""
    vision = {
        "model_type": "resnet",
        "embedding_size": 2,
        "hidden_sizes": [2],
        "depths": [1],
        "layer_type": "basic",
        "downsample_in_first_stage": False,
    }
    config = VisionCLIPConfig(vision_config=vision, text_config=TEXT, projection_dim=2)
    model = VisionCLIPModel(config).eval()
    with torch.no_grad():
        for name, parameter in model.vision_model.named_parameters():
            parameter.fill_(1.0 if name.endswith("normalization.weight") else 0.0)
        for module in model.vision_model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.zero_()
                module.running_var.fill_(1.0 - module.eps)  # normalises by exactly 1
        embedder = model.vision_model.embedder.embedder
        embedder.convolution.weight[0, 2, 3, 3] = 1.0  # the blue value at the kernel's centre
        embedder.normalization.bias[1] = 1.0  # the constant channel
        model.visual_projection.weight.copy_(torch.eye(2))
    model.zero_shot_classifier = KnownTexts()
    return model


def hand_built_processor(tiny_model_and_processor) -> VisionCLIPProcessor:
    image_processor = VisionCLIPImageProcessor(size={"height": CANVAS, "width": CANVAS})
    return VisionCLIPProcessor(image_processor, tiny_model_and_processor[1].tokenizer)


def native_blue_feature(pixel_values: torch.Tensor) -> torch.Tensor:
    """`(B, h, w)` channel 0 of the hand-built tower's features, computed directly from the pixels."""
    blue = torch.relu(pixel_values[:, 2, ::2, ::2])  # the centre tap of a stride-2 convolution, then ReLU
    return torch.nn.functional.max_pool2d(blue[:, None], 3, stride=2, padding=1)[:, 0]


def fundus_with_dot(size: tuple[int, int], disc: tuple[int, int, int, int], dot: tuple[int, int]) -> Image.Image:
    """A dim red disc (no blue) on black inside `disc`, and a white dot centred at `dot`."""
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    draw.ellipse(disc, fill=(170, 70, 0))
    radius = max(size) // 16
    draw.ellipse((dot[0] - radius, dot[1] - radius, dot[0] + radius, dot[1] + radius), fill=(255, 255, 255))
    return image


# (image size, field-of-view disc, dot centre): landscape with a cut, off-centre disc; portrait; square, no border
CASES = [
    ((400, 220), (120, 10, 320, 210), (260, 80)),
    ((200, 360), (0, 90, 200, 290), (70, 230)),
    ((256, 256), (-40, -40, 296, 296), (200, 60)),
]


def test_similarity_map_is_the_known_cosine_at_native_stride(tiny_model_and_processor):
    model, processor = hand_built_model(), hand_built_processor(tiny_model_and_processor)
    image = fundus_with_dot((CANVAS, CANVAS), (0, 0, CANVAS, CANVAS), (40, 20))
    pixel_values = torch.from_numpy(processor.image_processor.to_pixel_values([image]))

    result = model.explain(pixel_values, processor, text=[DOT, BACKGROUND])

    assert result.map_size == (CANVAS // STRIDE, CANVAS // STRIDE)
    blue = native_blue_feature(pixel_values)
    assert blue.max() > 2.5 and blue.min() == 0.0  # the dot is seen, the rest is not
    cam = model.explain(pixel_values, processor, text=[DOT, BACKGROUND], method="cam")
    expected_maps = [
        (result, DOT, blue / torch.sqrt(1 + blue**2)),  # cosine of (d, 1) with e0
        (result, BACKGROUND, 1 / torch.sqrt(1 + blue**2)),
        (cam, DOT, blue),  # dot product of (d, 1) with e0
        (cam, BACKGROUND, torch.ones_like(blue)),
    ]
    for explained, name, expected in expected_maps:
        upsampled = torch.nn.functional.interpolate(expected[:, None], size=(CANVAS, CANVAS), mode="bilinear")
        heatmap = explained.heatmaps[0][explained.class_names.index(name)]
        torch.testing.assert_close(torch.from_numpy(heatmap), upsampled[0, 0])


def test_upscale_makes_the_known_map_of_the_enlarged_image_and_keeps_the_scores(tiny_model_and_processor):
    model, processor = hand_built_model(), hand_built_processor(tiny_model_and_processor)
    image = fundus_with_dot((CANVAS, CANVAS), (0, 0, CANVAS, CANVAS), (40, 20))
    pixel_values = torch.from_numpy(processor.image_processor.to_pixel_values([image]))

    native = model.explain(pixel_values, processor, text=[DOT, BACKGROUND], method="cam")
    finer = model.explain(pixel_values, processor, text=[DOT, BACKGROUND], method="cam", upscale=2)

    assert finer.map_size == (2 * CANVAS // STRIDE, 2 * CANVAS // STRIDE)
    enlarged = torch.nn.functional.interpolate(pixel_values, scale_factor=2, mode="bilinear", align_corners=False)
    blue = native_blue_feature(enlarged)
    expected = torch.nn.functional.interpolate(blue[:, None], size=(CANVAS, CANVAS), mode="bilinear")[0, 0]
    torch.testing.assert_close(torch.from_numpy(finer.heatmaps[0][finer.class_names.index(DOT)]), expected)
    torch.testing.assert_close(finer.logits, native.logits)  # scores from the processed image as it is


def blob_centre(heatmap: np.ndarray) -> np.ndarray:
    """`(x, y)` centroid of the pixels at or above half the map's maximum."""
    return np.argwhere(heatmap >= 0.5 * np.nanmax(heatmap)).mean(axis=0)[::-1]


@pytest.mark.parametrize("method", ["similarity", "cam", "gradcam"])
def test_maps_come_back_in_each_inputs_pixels_for_a_batch_of_mixed_sizes(tiny_model_and_processor, method):
    model, processor = hand_built_model(), hand_built_processor(tiny_model_and_processor)
    images = [fundus_with_dot(size, disc, dot) for size, disc, dot in CASES]

    result = model.explain(images, processor, text=[DOT, BACKGROUND], method=method, batch_size=3)

    for (size, _, dot), image, heatmap, box in zip(CASES, images, result.heatmaps, result.boxes, strict=True):
        assert heatmap.shape == (2, size[1], size[0])
        assert box == find_field_of_view(image, 0.1, 0.01)
        left, top, right, bottom = box
        seen = np.zeros(heatmap.shape[1:], dtype=bool)
        seen[top:bottom, left:right] = True
        assert np.isnan(heatmap[:, ~seen]).all() and np.isfinite(heatmap[:, seen]).all()
        # the same map on the processor's canvas, carried back by hand through the padding, resize and crop
        canvas, geometry = processor.image_processor.prepare_image_with_geometry(image)
        pixel_values = torch.from_numpy(processor.image_processor.to_pixel_values([canvas]))
        on_canvas = model.explain(pixel_values, processor, text=[DOT, BACKGROUND], method=method).heatmaps[0][0]
        scale = (right - left) / geometry.placement.fitted[0]
        carried = (blob_centre(on_canvas) + 0.5 - geometry.placement.offset) * scale + (left, top) - 0.5
        np.testing.assert_allclose(blob_centre(heatmap[0]), carried, atol=scale)
        # and the dot is where the map peaks, within one feature-map cell (the tower's own sampling offset)
        assert np.abs(blob_centre(heatmap[0]) - dot).max() <= STRIDE * scale, (size, blob_centre(heatmap[0]), dot)


def test_an_image_gets_the_same_map_alone_and_in_a_batch_of_other_sizes(tiny_model_and_processor):
    model, processor = hand_built_model(), hand_built_processor(tiny_model_and_processor)
    images = [fundus_with_dot(size, disc, dot) for size, disc, dot in CASES]
    alone = model.explain(images[1], processor, text=[DOT, BACKGROUND])
    batched = model.explain(images, processor, text=[DOT, BACKGROUND], batch_size=2)
    np.testing.assert_allclose(alone.heatmaps[0], batched.heatmaps[1], atol=1e-6)
    torch.testing.assert_close(alone.logits[0], batched.logits[1])


def tower_model(vision: dict) -> VisionCLIPModel:
    """A random model with the `vision` tower (its `vision_feature_layers` key, if any, goes to the model config)."""
    vision = dict(vision)
    layers = vision.pop("vision_feature_layers", None)
    config = VisionCLIPConfig(
        vision_config=vision, text_config=TEXT, projection_dim=8, prompt_templates=["{}"], vision_feature_layers=layers
    )
    torch.manual_seed(0)
    model = VisionCLIPModel(config).eval()
    with torch.no_grad():  # transformers draws batch-norm scales near 0, which zeroes a deep random CNN's output
        for module in model.vision_model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.fill_(1.0)
    return model


TOWERS = {
    "resnet": {"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]},
    "efficientnet": {
        "model_type": "efficientnet",
        "width_coefficient": 0.1,
        "depth_coefficient": 0.1,
        "hidden_dim": 128,  # the top convolution's width: 1280 x width_coefficient
        "squeeze_expansion_ratio": 1e-9,  # EfficientNet-Lite, as the small-pretrained preset
        "image_size": 64,
    },
    "convnext": {"model_type": "convnext", "hidden_sizes": [8, 16], "depths": [1, 1], "num_stages": 2},
    "vit": {
        "model_type": "vit",
        "image_size": 64,
        "patch_size": 16,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 32,
    },
}
# image features from two stages at different strides (the stem's map and the last stage's, resized to the stem's)
TOWERS["resnet-feature-layers"] = {**TOWERS["resnet"], "vision_feature_layers": [0, -1]}
TOWERS["efficientnet-feature-layers"] = {**TOWERS["efficientnet"], "vision_feature_layers": [-2, -1]}


@pytest.mark.parametrize("tower", sorted(TOWERS))
@pytest.mark.parametrize("method", ["similarity", "cam", "gradcam"])
def test_every_supported_tower_gives_finite_maps_and_zero_shot_logits(tiny_model_and_processor, tower, method):
    model, processor = tower_model(TOWERS[tower]), hand_built_processor(tiny_model_and_processor)
    images = [fundus_with_dot(size, disc, dot) for size, disc, dot in CASES[:2]]

    result = model.explain(images, processor, class_names=["glaucoma", "a normal fundus"], method=method)

    expected = model.zero_shot(
        torch.from_numpy(
            processor.image_processor.to_pixel_values(
                [processor.image_processor.prepare_image_with_geometry(image)[0] for image in images]
            )
        ),
        processor,
        class_names=["glaucoma", "a normal fundus"],
    )
    torch.testing.assert_close(result.logits, expected.logits, atol=1e-4, rtol=1e-4)
    for heatmap, (size, _, _) in zip(result.heatmaps, CASES[:2], strict=True):
        assert heatmap.shape == (2, size[1], size[0])
        inside = heatmap[:, np.isfinite(heatmap[0])]
        assert inside.size and np.ptp(inside, axis=1).min() > 0  # the map varies over the image
    if tower == "vit":
        assert result.map_size == (CANVAS // 16, CANVAS // 16)


@pytest.mark.parametrize("tower", sorted(TOWERS))
def test_upscale_works_for_every_supported_tower(tiny_model_and_processor, tower):
    model, processor = tower_model(TOWERS[tower]), hand_built_processor(tiny_model_and_processor)
    image = fundus_with_dot(*CASES[0])
    names = ["glaucoma", "a normal fundus"]
    native = model.explain([image], processor, class_names=names)
    finer = model.explain([image], processor, class_names=names, upscale=2)
    assert finer.map_size == (2 * native.map_size[0], 2 * native.map_size[1])
    assert finer.heatmaps[0].shape == native.heatmaps[0].shape
    assert np.isfinite(finer.heatmaps[0][:, np.isfinite(native.heatmaps[0][0])]).all()
    torch.testing.assert_close(finer.logits, native.logits, atol=1e-5, rtol=1e-5)


def test_a_tower_it_cannot_explain_is_named(tiny_model_and_processor):
    swin = {"model_type": "swin", "image_size": 64, "embed_dim": 8, "depths": [1], "num_heads": [1], "patch_size": 4}
    model, processor = tower_model(swin), hand_built_processor(tiny_model_and_processor)
    with pytest.raises(ValueError, match="'swin' vision tower"):
        model.explain([fundus_with_dot(*CASES[0])], processor, text="glaucoma")


def test_text_as_prompt_ensembles_gives_the_class_names_maps(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    image = fundus_with_dot(*CASES[0])
    by_name = model.explain(image, processor, class_names=["glaucoma", "drusen"])
    ensembles = model.class_prompts(class_names=["glaucoma", "drusen"])
    by_prompts = model.explain(image, processor, text=ensembles)
    assert by_prompts.class_names == by_name.class_names
    np.testing.assert_allclose(by_prompts.heatmaps[0], by_name.heatmaps[0], rtol=1e-5, atol=1e-6)


def test_bad_arguments_are_refused_with_the_reason(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    image = fundus_with_dot(*CASES[0])
    with pytest.raises(ValueError, match="exactly one of `text`"):
        model.explain([image], processor, text="glaucoma", task="glaucoma")
    with pytest.raises(ValueError, match="Unknown explain method"):
        model.explain([image], processor, text="glaucoma", method="saliency")
    with pytest.raises(ValueError, match="distinct"):
        model.explain([image], processor, text=["glaucoma", "glaucoma"])
    older = SimpleNamespace(tokenizer=processor.tokenizer, image_processor=object())
    with pytest.raises(ValueError, match="predates it"):
        model.explain([image], older, text="glaucoma")
    for upscale in (0, 1.5, True, 9):
        with pytest.raises(ValueError, match="upscale must be an integer"):
            model.explain([image], processor, text="glaucoma", upscale=upscale)


HUB_USER_CHILD = """
    import numpy as np
    from transformers import AutoModel, AutoProcessor

    folder, out, photos = sys.argv[1], sys.argv[2], sys.argv[3:]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    results = {}
    for method in ("similarity", "gradcam"):
        result = model.explain(photos, processor, task="glaucoma", method=method)
        results[method] = {
            "model_module": type(model).__module__,
            "explain_module": type(model).explain.__module__,
            "shapes": [list(h.shape) for h in result.heatmaps],
            "sums": [float(np.nansum(h)) for h in result.heatmaps],
            "logits": result.logits.tolist(),
        }
    json.dump(results, open(out, "w"))
"""


def test_explain_works_from_a_saved_folder_in_a_hub_users_process_on_mixed_sizes(
    tiny_folder, tiny_model_and_processor, real_photos, tmp_path: Path
):
    photo = Image.open(real_photos[0]).convert("RGB")
    cut = tmp_path / "cut.png"
    photo.crop((0, 40, photo.width * 2 // 3, photo.height)).save(cut)  # another size, a cut field
    portrait = tmp_path / "portrait.png"
    fundus_with_dot(*CASES[1]).save(portrait)
    photos = [str(real_photos[0]), str(cut), str(portrait)]
    completed = run_as_hub_user(HUB_USER_CHILD, [str(tiny_folder), str(tmp_path / "out.json"), *photos], tmp_path)
    assert completed.returncode == 0, completed.stderr[-4000:]
    child = json.loads((tmp_path / "out.json").read_text())

    model, processor = tiny_model_and_processor
    for method, seen in child.items():
        assert seen["model_module"].startswith("transformers_modules.")
        # the explain code is its own remote-code file, which the saved folder carries
        assert seen["explain_module"].startswith("transformers_modules.")
        assert seen["explain_module"].endswith(".explaining_visionclip")
        expected = model.explain(photos, processor, task="glaucoma", method=method)
        assert seen["shapes"] == [list(h.shape) for h in expected.heatmaps]
        assert len({tuple(shape) for shape in seen["shapes"]}) == len(photos)
        np.testing.assert_allclose(seen["sums"], [np.nansum(h) for h in expected.heatmaps], rtol=1e-4)
        np.testing.assert_allclose(seen["logits"], expected.logits.tolist(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["similarity", "gradcam"])
def test_explain_runs_under_bf16_autocast_and_scores_in_fp32(tiny_model_and_processor, method):
    model, processor = tiny_model_and_processor
    image = fundus_with_dot(*CASES[0])
    full = model.explain(image, processor, task="glaucoma", method=method)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model.explain(image, processor, task="glaucoma", method=method)
    assert mixed.logits.dtype == torch.float32 and mixed.heatmaps[0].dtype == np.float32
    torch.testing.assert_close(mixed.logits, full.logits, atol=0.1, rtol=0.05)


@pytest.mark.parametrize("tower", ["resnet-feature-layers", "efficientnet-feature-layers"])
def test_feature_layer_maps_average_to_the_pooled_embedding(tower):
    model = tower_model(TOWERS[tower])
    pixel_values = torch.randn(2, 3, CANVAS, CANVAS, generator=torch.Generator().manual_seed(0))
    classifier = torch.nn.functional.normalize(torch.randn(3, 8, generator=torch.Generator().manual_seed(1)), dim=-1)

    maps, _ = model._similarity_maps(pixel_values, classifier, normalize=False)

    pooled = model.get_image_features(pixel_values).pooler_output
    # the image embedding is the projected average of the stacked map, so the unnormalised map averages to its score
    torch.testing.assert_close(maps.mean(dim=(2, 3)), pooled @ classifier.t(), atol=1e-5, rtol=1e-4)
