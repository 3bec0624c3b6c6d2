"""Model presets: named YAML files in ``visionclip/data/presets`` describing towers, image size and tokenizer.

Every preset builds offline (random towers, the project's tokenizer), through the model factory::

    from visionclip.factory import build_model
    model, processor = build_model("tiny")

or from the command line (`visionclip/cli/presets.py`)::

    python -m visionclip.presets list
    python -m visionclip.presets build small ./untrained-small
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import AutoTokenizer

from configuration_visionclip import VisionCLIPConfig
from image_processing_visionclip import VisionCLIPImageProcessor
from processing_visionclip import VisionCLIPProcessor

from ..knowledge import load_knowledge_base
from ..packaged_towers import tower_source
from ..resources import PRESETS, data_path
from ..tokenization import build_knowledge_base_tokenizer
from ..zeroshot.tasks import recommended_tasks

PRESETS_DIR = data_path(PRESETS)
KNOWLEDGE_BASE_TOKENIZER = "knowledge-base"
_PRESET_KEYS = {
    "description",
    "image_size",
    "projection_dim",
    "text_pooling",
    "tokenizer",
    "vision_config",
    "text_config",
    "logit_scale_init_value",
    "logit_scale_max",
    "pretrained_towers",
    "image_mean",
    "image_std",
    "vision_feature_layers",
}


@dataclass
class Preset:
    """A model recipe: tower configs, projection size, input size and tokenizer source."""

    name: str
    description: str
    image_size: int
    projection_dim: int
    vision_config: dict[str, Any]
    text_config: dict[str, Any]
    tokenizer: str = KNOWLEDGE_BASE_TOKENIZER
    text_pooling: str = "cls"
    logit_scale_init_value: float = 2.6592
    logit_scale_max: float = 100.0
    pretrained_towers: dict[str, str] = field(default_factory=dict)
    image_mean: list[float] | None = None  # the normalisation the vision tower was trained with (default ImageNet's)
    image_std: list[float] | None = None
    vision_feature_layers: list[int] | None = None  # VisionCLIPConfig.vision_feature_layers; None: the pooled output

    @property
    def max_text_length(self) -> int:
        return int(self.text_config.get("max_position_embeddings", 512))

    def build_tokenizer(self):
        """The preset's tokenizer: the project's knowledge-base tokenizer, or `AutoTokenizer` for a packaged
        tower's name, a Hub id or a folder."""
        if self.tokenizer == KNOWLEDGE_BASE_TOKENIZER:
            return build_knowledge_base_tokenizer(model_max_length=self.max_text_length)
        return AutoTokenizer.from_pretrained(tower_source(self.tokenizer), model_max_length=self.max_text_length)

    def build_image_processor(self) -> VisionCLIPImageProcessor:
        normalisation = {
            key: value for key, value in (("image_mean", self.image_mean), ("image_std", self.image_std)) if value
        }
        return VisionCLIPImageProcessor(size={"height": self.image_size, "width": self.image_size}, **normalisation)

    def build_processor(self) -> VisionCLIPProcessor:
        return VisionCLIPProcessor(image_processor=self.build_image_processor(), tokenizer=self.build_tokenizer())

    def build_config(self, vocab_size: int | None = None) -> VisionCLIPConfig:
        """The model config, carrying the knowledge base's zero-shot tasks and prompt templates."""
        knowledge = load_knowledge_base()
        text_config = dict(self.text_config)
        if vocab_size is not None and "vocab_size" not in text_config:
            text_config["vocab_size"] = vocab_size
        return VisionCLIPConfig(
            vision_config=dict(self.vision_config),
            text_config=text_config,
            projection_dim=self.projection_dim,
            text_pooling=self.text_pooling,
            logit_scale_init_value=self.logit_scale_init_value,
            logit_scale_max=self.logit_scale_max,
            vision_feature_layers=self.vision_feature_layers,
            zero_shot_tasks={name: task.to_config() for name, task in recommended_tasks(knowledge).items()},
            prompt_templates=list(knowledge.prompt_templates),
        )


def list_presets() -> list[str]:
    return sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))


def load_preset(name_or_path: str | Path) -> Preset:
    """A preset by name (see `list_presets()`) or from a YAML file path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PRESETS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ValueError(f"Unknown preset {str(name_or_path)!r}: choose one of {list_presets()} or give a YAML file")
    with path.open(encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a preset must be a mapping")
    unknown = set(raw) - _PRESET_KEYS
    missing = {"image_size", "projection_dim", "vision_config", "text_config"} - set(raw)
    if unknown or missing:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
    if not isinstance(raw["image_size"], int) or raw["image_size"] < 16:
        raise ValueError(f"{path}: image_size must be an integer >= 16, got {raw['image_size']!r}")
    raw.setdefault("description", "")
    return Preset(name=path.stem, **raw)
