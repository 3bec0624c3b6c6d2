"""The classifier's starting point, WiSE-FT, layer-wise learning rates and the cross-validation folds."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from configuration_visionclip import VisionCLIPConfig
from modeling_visionclip import VisionCLIPModel
from tests.tiny_towers import TINY_LITE, tiny_config
from visionclip.finetune.data import assign_folds, read_images
from visionclip.finetune.fit import FitOptions, embed, fit, head_probabilities
from visionclip.finetune.model import parameter_groups, wise_interpolate, zero_shot_classifier
from visionclip.hardware import channels_last_is_safe
from visionclip.zeroshot.data import load_eval_dataset
from visionclip.zeroshot.engine import class_probabilities
from visionclip.zeroshot.tasks import load_task

COLUMNS = {"file": "file", "label": "label", "split": "split", "fold": "fold", "group": "patient", "image": "image"}


@pytest.fixture(scope="module")
def data(labelled_csv, tiny_model_and_processor):
    _, processor = tiny_model_and_processor
    dataset = load_eval_dataset(str(labelled_csv), load_task("hrf"), "hrf", COLUMNS)
    return read_images(dataset, processor.image_processor)


@pytest.fixture(scope="module")
def start(tiny_model_and_processor, data):
    model, processor = tiny_model_and_processor
    return zero_shot_classifier(model, processor.tokenizer, load_task("hrf"), data.classes).eval()


def test_zero_shot_init_reproduces_the_zero_shot_predictions(tiny_model_and_processor, data, start):
    model, processor = tiny_model_and_processor
    vectors = embed(start, processor.image_processor, data.images, "no")
    expected = class_probabilities(model, processor.tokenizer, load_task("hrf"), vectors)
    probs = head_probabilities(start, vectors)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert (probs.argmax(1) == expected.argmax(1)).all()


def test_wise_ft_at_alpha_0_and_1_gives_its_ends_and_interpolates_between(start):
    tuned = copy.deepcopy(start)
    with torch.no_grad():
        for parameter in tuned.parameters():
            parameter.add_(torch.randn_like(parameter))
    for alpha, expected in ((0.0, start), (1.0, tuned)):
        mixed = wise_interpolate(start, copy.deepcopy(tuned), alpha)
        for name, tensor in mixed.state_dict().items():
            torch.testing.assert_close(tensor, expected.state_dict()[name], atol=0, rtol=0)
    half = wise_interpolate(start, copy.deepcopy(tuned), 0.5)
    weight = half.classifier.weight
    torch.testing.assert_close(weight, (start.classifier.weight + tuned.classifier.weight) / 2)
    with pytest.raises(ValueError, match="between 0 and 1"):
        wise_interpolate(start, tuned, 1.5)


def test_fitting_with_wise_alpha_0_returns_the_zero_shot_classifier(start, data, tiny_model_and_processor):
    _, processor = tiny_model_and_processor
    options = FitOptions(mode="full", epochs=1, batch_size=8, wise_alpha=0.0, lr=1e-2, head_lr=1e-1)
    fitted = fit(start, processor.image_processor, data.images, data.labels, options)
    for name, tensor in start.state_dict().items():
        if tensor.is_floating_point():
            torch.testing.assert_close(fitted.state_dict()[name], tensor, atol=1e-6, rtol=0)


def test_layer_decay_lowers_the_learning_rate_block_by_block(start):
    groups = parameter_groups(start, tower_lr=1.0, head_lr=5.0, weight_decay=0.1, layer_decay=0.5)
    by_parameter = {id(p): group for group in groups for p in group["params"]}
    rates = {name: by_parameter[id(p)]["lr"] for name, p in start.named_parameters() if p.requires_grad}
    assert rates["classifier.weight"] == 5.0 and by_parameter[id(start.classifier.weight)]["weight_decay"] == 0.0
    assert rates["visual_projection.weight"] == 1.0
    tower = [rate for name, rate in rates.items() if name.startswith("vision_model.")]
    assert tower[0] < tower[-1] <= 1.0  # the stem learns slowest
    assert len(set(tower)) > 2


def test_group_folds_keep_every_patient_on_one_side(data):
    folds = assign_folds(data, 3, seed=0, by="group")
    groups = data.groups
    for group in np.unique(groups):
        assert len(np.unique(folds[groups == group])) == 1, group
    for fold in np.unique(folds):
        assert set(data.labels[folds == fold]) == set(range(len(data.classes)))  # stratified: every class tested


def test_full_fine_tuning_trains_channels_last_and_returns_contiguous_weights(data, tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    lite = {**TINY_LITE, "width_coefficient": 1.0, "hidden_dim": 1280}  # Lite0's widths: 16+ channels everywhere
    config = VisionCLIPConfig(
        vision_config=lite,
        text_config=model.config.text_config.to_dict(),
        projection_dim=model.config.projection_dim,
        prompt_templates=model.config.prompt_templates,
    )
    wide = VisionCLIPModel(config).eval()
    assert channels_last_is_safe(wide, gradient_checkpointing=False, device=torch.device("cpu"))
    assert not channels_last_is_safe(VisionCLIPModel(tiny_config(vision_config=TINY_LITE)), False, torch.device("cpu"))
    start = zero_shot_classifier(wide, processor.tokenizer, load_task("hrf"), data.classes).eval()
    layouts = []  # of the training batches (inference makes its own batches channels-last anyway)

    def record(module, args, kwargs):
        if torch.is_grad_enabled():
            layouts.append(kwargs["pixel_values"].is_contiguous(memory_format=torch.channels_last))

    start.vision_model.register_forward_pre_hook(record, with_kwargs=True)
    options = FitOptions(mode="full", epochs=1, batch_size=8, lr=1e-2, head_lr=1e-1)
    fitted = fit(start, processor.image_processor, data.images, data.labels, options)
    assert layouts and all(layouts)
    assert all(tensor.is_contiguous() for tensor in fitted.state_dict().values())
    changed = [
        name for name, tensor in fitted.state_dict().items() if not torch.equal(tensor, start.state_dict()[name])
    ]
    assert any(name.startswith("vision_model.") for name in changed)
