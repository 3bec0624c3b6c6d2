"""The one way to build or load a VisionCLIP model and its processor.

Build (random weights where nothing pretrained is named):

    model, processor = build_model("tiny")                                        # a preset name or YAML file
    model, processor = build_model("small-pretrained")      # the preset's packaged pretrained towers (no download)
    model, processor = build_model("small-pretrained", vision_tower="none", text_tower="none")  # random towers
    model, processor = build_model("flair-reference", vision_tower="microsoft/resnet-50",
                                   text_tower="emilyalsentzer/Bio_ClinicalBERT")   # pretrained towers
    model = build_from_config(model.config, seed=0)                               # same architecture, new weights

Load (evaluation mode):

    model, processor = load_model("runs/visionclip/model")   # a saved folder, a Hub id (owner/name),
                                                                     # a training checkpoint folder or a preset name
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoProcessor, AutoTokenizer

from configuration_visionclip import VisionCLIPConfig
from modeling_visionclip import VisionCLIPModel
from processing_visionclip import VisionCLIPProcessor

from .packaged_towers import tower_source
from .presets import Preset, list_presets, load_preset

# A training checkpoint folder (visionclip/training/checkpoint.py): marked by its state file, the model's weights
# named `model.*` beside the loss's in one safetensors file.
TRAINER_STATE, CHECKPOINT_WEIGHTS, MODEL_PREFIX = "trainer_state.json", "weights.safetensors", "model."
_SHARED_FIELDS = (
    "projection_dim",
    "text_pooling",
    "logit_scale_init_value",
    "logit_scale_max",
    "vision_feature_layers",
    "zero_shot_tasks",
    "prompt_templates",
)

SourceKind = Literal["checkpoint", "folder", "preset", "hub"]
RANDOM_TOWER = "none"  # as a tower name: the preset's tower with random weights, even where it names pretrained ones


def build_model(
    preset: str | Path | Preset, vision_tower: str | None = None, text_tower: str | None = None
) -> tuple[VisionCLIPModel, VisionCLIPProcessor]:
    """A preset's model and processor, without any download unless a Hub id is named.

    `vision_tower` / `text_tower` (a packaged tower's name from `visionclip.packaged_towers`, a Hub id or a local
    folder) replace the preset's random towers with pretrained ones, and the text tower's tokenizer replaces the
    preset's; the preset's projection, image size, normalisation, temperature and zero-shot tasks stay. Not given
    (None), a tower is the preset's `pretrained_towers` entry if it has one, else random; `"none"` is random. The
    preset's `vision_feature_layers` index its own vision tower's hidden states: another vision tower reads its pooled
    output."""
    preset = preset if isinstance(preset, Preset) else load_preset(preset)
    if preset.vision_feature_layers and not _is_preset_vision_tower(vision_tower, preset):
        preset = dataclasses.replace(preset, vision_feature_layers=None)
    vision_tower, text_tower = (
        _chosen_tower(given, preset.pretrained_towers.get(which))
        for which, given in (("vision", vision_tower), ("text", text_tower))
    )
    processor = preset.build_processor()
    if vision_tower is None and text_tower is None:
        return VisionCLIPModel(preset.build_config(vocab_size=len(processor.tokenizer))), processor
    if text_tower is not None:
        processor = VisionCLIPProcessor(processor.image_processor, AutoTokenizer.from_pretrained(text_tower))
    config = preset.build_config(vocab_size=len(processor.tokenizer))
    # a named tower is loaded by the model's own constructor; a tower not named is the preset's, randomly initialised
    random_towers = {
        f"{which}_model": AutoModel.from_config(getattr(config, f"{which}_config"))
        for which, name in (("vision", vision_tower), ("text", text_tower))
        if name is None
    }
    model = VisionCLIPModel.from_vision_text_pretrained(
        vision_tower, text_tower, **random_towers, **{name: getattr(config, name) for name in _SHARED_FIELDS}
    )
    return model, processor


def _is_preset_vision_tower(given: str | None, preset: Preset) -> bool:
    """Whether `given` (a `vision_tower` argument) keeps the preset's vision architecture."""
    return given is None or given.lower() == RANDOM_TOWER or given == preset.pretrained_towers.get("vision")


def _chosen_tower(given: str | None, preset_default: str | None) -> str | None:
    """The folder or Hub id a tower loads from, or None for a random one."""
    name = preset_default if given is None else given
    if name is None or name.lower() == RANDOM_TOWER:
        return None
    return tower_source(name)


def build_from_config(config: VisionCLIPConfig, seed: int | None = None) -> VisionCLIPModel:
    """A model of `config`'s architecture with freshly initialised weights (reproducible with `seed`)."""
    if seed is not None:
        torch.manual_seed(seed)
    return VisionCLIPModel(config)


def source_kind(source: str | Path) -> SourceKind:
    """What `load_model(source)` reads: a training checkpoint folder, a saved folder, a preset name or a Hub id.
    An existing folder wins over a preset of the same name; `FileNotFoundError` when it is none of them."""
    path = Path(source)
    if (path / TRAINER_STATE).is_file():
        return "checkpoint"
    if path.exists():
        return "folder"
    if str(source) in list_presets():
        return "preset"
    if str(source).count("/") == 1:
        return "hub"
    raise FileNotFoundError(
        f"Model {str(source)!r}: no such folder, not a preset ({', '.join(list_presets())}), "
        "and not a Hub id (owner/name)"
    )


def load_model(source: str | Path) -> tuple[VisionCLIPModel, VisionCLIPProcessor]:
    """(model in evaluation mode, processor) from a saved folder or Hub id (with its remote code), a training
    checkpoint folder (its preset and towers, then its weights) or a preset name (its pretrained towers if it names
    any, random weights otherwise)."""
    kind = source_kind(source)
    if kind == "checkpoint":
        model, processor = _load_checkpoint(Path(source))
    elif kind == "preset":
        model, processor = build_model(str(source))
    else:
        model = AutoModel.from_pretrained(str(source), trust_remote_code=True)
        processor = AutoProcessor.from_pretrained(str(source), trust_remote_code=True)
    return model.eval(), processor


def _load_checkpoint(folder: Path) -> tuple[VisionCLIPModel, VisionCLIPProcessor]:
    state = json.loads((folder / TRAINER_STATE).read_text())
    config = state["config"]
    # the image features the weights were trained on: a checkpoint written before the option existed read the pooled
    # output, whatever its preset says today
    preset = dataclasses.replace(
        load_preset(config["preset"]), vision_feature_layers=state.get("vision_feature_layers")
    )
    model, processor = build_model(preset, config.get("vision_tower"), config.get("text_tower"))
    weights = load_file(folder / CHECKPOINT_WEIGHTS)
    model.load_state_dict(
        {name.removeprefix(MODEL_PREFIX): t for name, t in weights.items() if name.startswith(MODEL_PREFIX)}
    )
    model.config.training_objective = config.get("objective", "contrastive")  # as the exported folder records it
    return model, processor
