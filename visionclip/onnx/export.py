"""Export a saved VisionCLIP model folder to ONNX: the image and text encoders, with what zero-shot needs beside them.

The export folder holds `image_encoder.onnx` (`pixel_values` `(batch, 3, H, W)` -> `image_embeds` `(batch, D)`) and
`text_encoder.onnx` (`input_ids`, `attention_mask` `(batch, sequence)` -> `text_embeds` `(batch, D)`), both
L2-normalised and with dynamic batch (and sequence) axes; with `quantize`, their dynamic int8 versions
(`*.int8.onnx`: matrix products in int8, so a CNN image tower keeps its convolutions in fp32); the processor's files (tokenizer, image processor settings) and the image processor's code; the
prompts and temperature (`zero_shot.json`: the model's recommended zero-shot tasks and prompt templates); and the
torch-free runtime `visionclip_onnx.py` (a copy of `visionclip/onnx/runtime.py`).

Encoders are exported with torch's dynamo exporter (`torch.onnx.export(..., dynamo=True)`, torch's default since
2.9; the TorchScript exporter is deprecated), which needs onnxscript. Before anything is written in place, the
exported encoders are checked against the eager model on the folder's example images and the model's prompts; the
folder is built beside the output and swapped in whole.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import image_processing_visionclip
from modeling_visionclip import VisionCLIPModel

from ..factory import TRAINER_STATE, load_model
from ..hub import code_files_needed
from ..shards import replace_folder
from . import runtime

REQUIRED_FILES = ("config.json", "processor_config.json", "tokenizer.json")  # and the code files it needs
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")  # one of these
RUNTIME_FILE = "visionclip_onnx.py"
PARITY_COSINE = 1e-4  # exported and eager embeddings may differ by at most this in cosine (1 - cos)
EXAMPLE_BATCH = 2  # traced batch size: above 1, so that the batch axis stays symbolic
# int8 quantisation covers matrix products only: dynamically quantised convolutions (ConvInteger) turned the main
# job's EfficientNet-Lite0 image embeddings to a cosine of 0.6 with fp32 on real photographs, and ran slower
QUANTIZED_OPS = ("MatMul", "Gemm")


class _ImageEncoder(nn.Module):
    def __init__(self, model: VisionCLIPModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixel_values)


class _TextEncoder(nn.Module):
    def __init__(self, model: VisionCLIPModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(input_ids, attention_mask)


def check_model_folder(folder: Path) -> None:
    """`FileNotFoundError` / `ValueError` naming what makes `folder` unexportable: not a folder, unreadable, a
    training checkpoint, a missing file, or a model that is not a `VisionCLIPModel`."""
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder not found: {folder}")
    if (folder / TRAINER_STATE).is_file():
        raise ValueError(
            f"{folder} is a training checkpoint, not a saved model folder: export the model folder the run wrote "
            "(<output_dir>/model)"
        )
    required = (*REQUIRED_FILES, *code_files_needed(folder))
    missing = [name for name in required if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append(WEIGHT_FILES[0])
    if missing:
        raise ValueError(f"{folder} is not a saved VisionCLIP model folder: missing {', '.join(missing)}")
    unreadable = [name for name in required if not os.access(folder / name, os.R_OK)]
    if unreadable:
        raise ValueError(f"{folder}: cannot read {', '.join(unreadable)}")
    try:
        architectures = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{folder / 'config.json'} is not valid JSON ({error})") from None
    if architectures != [VisionCLIPModel.__name__]:
        raise ValueError(
            f"{folder} holds a {architectures or 'model of no stated architecture'}, not a VisionCLIPModel: only a "
            "zero-shot (image-text) model exports (a fine-tuned classifier has no text encoder)"
        )


def check_output(output: Path, model_folder: Path) -> None:
    """`ValueError` when writing `output` could destroy something: the model folder itself (or a folder holding
    it), or an existing folder that is not an earlier export."""
    resolved, source = output.resolve(), model_folder.resolve()
    if resolved == source or resolved in source.parents:
        raise ValueError(f"--output {output} would replace the model folder {model_folder}; choose another folder")
    if output.exists() and not (output.is_dir() and (output / runtime.SETTINGS_FILE).is_file()):
        if output.is_dir() and not any(output.iterdir()):
            return
        raise ValueError(
            f"--output {output} exists and is not an ONNX export of this tool (no {runtime.SETTINGS_FILE}); "
            "choose a new folder or remove it"
        )


def export_onnx(model_folder: Path, output: Path, quantize: bool = False, opset: int | None = None) -> Path:
    """Write the ONNX export of `model_folder` to `output` (see the module docstring); returns `output`."""
    model_folder, output = Path(model_folder), Path(output)
    if opset is not None and not (isinstance(opset, int) and 18 <= opset <= 23):
        raise ValueError(f"--opset must be an ONNX opset from 18 to 23 (the dynamo exporter's range), got {opset}")
    check_model_folder(model_folder)
    check_output(output, model_folder)
    model, processor = load_model(model_folder)
    temporary = output.with_name(output.name + ".tmp")
    if temporary.exists():
        shutil.rmtree(temporary)
    try:
        temporary.mkdir(parents=True)
        _write_export(temporary, model, processor, model_folder, quantize, opset)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    replace_folder(temporary, output)  # removes an earlier export only once this one is complete
    return output


def _write_export(
    folder: Path, model: VisionCLIPModel, processor, source: Path, quantize: bool, opset: int | None
) -> None:
    pixel_values = _probe_pixels(processor, source)
    tokens = _probe_tokens(model, processor)
    image_file, text_file = (folder / name for name in runtime.ENCODER_FILES[False])
    batch = torch.export.Dim("batch", min=1, max=65536)
    sequence = torch.export.Dim("sequence", min=1, max=_max_text_length(model))
    with torch.no_grad():
        _export(_ImageEncoder(model), (pixel_values,), {"pixel_values": {0: batch}}, image_file, opset)
        text_axes = {name: {0: batch, 1: sequence} for name in ("input_ids", "attention_mask")}
        _export(_TextEncoder(model), (tokens["input_ids"], tokens["attention_mask"]), text_axes, text_file, opset)
    processor.save_pretrained(folder)
    shutil.copyfile(image_processing_visionclip.__file__, folder / runtime.IMAGE_PROCESSOR_CODE)
    shutil.copyfile(runtime.__file__, folder / RUNTIME_FILE)
    (folder / runtime.SETTINGS_FILE).write_text(json.dumps(_settings(model, source), indent=2) + "\n")
    check_parity(folder, model, pixel_values, tokens)
    if quantize:
        for fp32, int8 in zip(runtime.ENCODER_FILES[False], runtime.ENCODER_FILES[True], strict=True):
            quantize_encoder(folder / fp32, folder / int8)


def _export(module: nn.Module, args: tuple, dynamic_shapes: dict, path: Path, opset: int | None) -> None:
    names = list(dynamic_shapes)
    output = "image_embeds" if names == ["pixel_values"] else "text_embeds"
    with warnings.catch_warnings():
        # inputs that share the batch or sequence axis name it once; the exporter warns about each repeat
        warnings.filterwarnings("ignore", message=r"# The axis name: .* will not be used", category=UserWarning)
        program = torch.onnx.export(
            module.eval(),
            args,
            input_names=names,
            output_names=[output],
            dynamic_shapes=dynamic_shapes,
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    program.save(str(path))


def _max_text_length(model: VisionCLIPModel) -> int:
    """The text tower's positions (the model cuts longer inputs to them), or the tokenizer-side cap if it has none."""
    return int(getattr(model.config.text_config, "max_position_embeddings", None) or 4096)


def _settings(model: VisionCLIPModel, source: Path) -> dict[str, Any]:
    return {
        "source": str(source.resolve()),
        "logit_scale": float(model.logit_scale_value().detach()),
        "projection_dim": model.config.projection_dim,
        "max_text_length": _max_text_length(model),
        "prompt_templates": list(model.config.prompt_templates or []),
        "zero_shot_tasks": model.zero_shot_tasks,
        "exported_with": {"torch": torch.__version__, "exporter": "dynamo"},
    }


def _probe_pixels(processor, source: Path) -> torch.Tensor:
    """Pixel values to trace and check with: the folder's example images, else random values in the processor's
    range; at least `EXAMPLE_BATCH` rows."""
    examples = sorted(path for pattern in ("*.png", "*.jpg") for path in (source / "examples").glob(pattern))
    if examples:
        pixels = torch.from_numpy(processor.image_processor(examples, return_tensors="np")["pixel_values"])
    else:
        low, high = processor.image_processor.pixel_value_range()
        size = processor.image_processor.size
        generator = torch.Generator().manual_seed(0)
        pixels = low + (high - low) * torch.rand(EXAMPLE_BATCH, 3, size["height"], size["width"], generator=generator)
    return pixels if len(pixels) >= EXAMPLE_BATCH else pixels.repeat(EXAMPLE_BATCH, 1, 1, 1)[:EXAMPLE_BATCH]


def _probe_tokens(model: VisionCLIPModel, processor) -> dict[str, torch.Tensor]:
    """The model's prompts (its tasks' and templates'), tokenized as zero-shot tokenizes them."""
    prompts = [prompt for task in model.zero_shot_tasks.values() for group in task["prompts"] for prompt in group]
    prompts += [template.format("glaucoma") for template in model.config.prompt_templates or ["{}"]]
    prompts = sorted(set(prompts)) or ["A fundus photograph of glaucoma.", "A normal fundus."]
    if len(prompts) < EXAMPLE_BATCH:
        prompts *= EXAMPLE_BATCH
    tokens = processor.tokenizer(prompts, padding=True, truncation=True, return_tensors="pt")
    limit = _max_text_length(model)
    return {name: tokens[name][:, :limit] for name in ("input_ids", "attention_mask")}


def check_parity(folder: Path, model: VisionCLIPModel, pixel_values: torch.Tensor, tokens: dict) -> None:
    """`ValueError` when the exported fp32 encoders' embeddings differ from eager by more than `PARITY_COSINE`."""
    exported = runtime.OnnxZeroShot(folder)
    with torch.no_grad():
        eager_images = model.encode_image(pixel_values).numpy()
        eager_texts = model.encode_text(tokens["input_ids"], tokens["attention_mask"]).numpy()
    onnx_images = exported.encode_pixels(pixel_values.numpy())
    feed = {name: tokens[name].numpy().astype(np.int64) for name in exported.text_input_names}
    onnx_texts = exported.text_session.run(None, feed)[0]
    for what, eager, onnx in (("image", eager_images, onnx_images), ("text", eager_texts, onnx_texts)):
        worst = float(1 - (eager * onnx).sum(axis=-1).min())
        if not worst <= PARITY_COSINE:
            raise ValueError(
                f"the exported {what} encoder disagrees with the eager model (1 - cosine up to {worst:.2e}, more "
                f"than {PARITY_COSINE:.0e}); nothing was written"
            )


def quantize_encoder(fp32: Path, int8: Path) -> None:
    """Dynamic int8 quantisation of one exported encoder's matrix products (`QUANTIZED_OPS`: int8 weights,
    activations quantised at run time), after onnxruntime's recommended pre-processing."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = int8.with_name(int8.name + ".prepared.onnx")
    try:
        # symbolic shape inference fails on the dynamo exporter's Expand nodes; ONNX's own inference suffices here
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(prepared, int8, weight_type=QuantType.QInt8, op_types_to_quantize=list(QUANTIZED_OPS))
    finally:
        prepared.unlink(missing_ok=True)
