"""ONNX export of the small preset (ResNet + 2-layer BERT, random weights, seeded) and its torch-free runtime: parity
with the eager model on real photographs, dynamic batch and text length, a process where torch cannot be imported,
and refusals naming the problem."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from tests.hub_user import run_as_hub_user
from visionclip.cli import export_onnx as export_cli
from visionclip.factory import build_model, load_model
from visionclip.onnx import export as onnx_export
from visionclip.onnx.export import RUNTIME_FILE, export_onnx
from visionclip.onnx.runtime import ENCODER_FILES, SETTINGS_FILE, OnnxZeroShot
from visionclip.presets import load_preset

COSINE_TOLERANCE = 1e-4
CLASS_NAMES = ["glaucoma", "diabetic retinopathy", "a normal fundus"]

TORCH_FREE_CHILD = """
    sys.modules["torch"] = None  # as if torch were not installed: `import torch` raises
    try:
        import torch
    except ImportError:
        pass
    else:
        raise SystemExit("torch imported despite the block")
    export, photos, task, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
    sys.path.insert(0, export)
    from visionclip_onnx import OnnxZeroShot

    runtime = OnnxZeroShot(export, threads=1)
    result = runtime.zero_shot(photos, task=task)
    json.dump({"probs": result.probs.tolist(), "predictions": result.predictions,
               "loaded": sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "visionclip"))},
              open(out, "w"))
"""


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model, processor = build_model("small")
    folder = tmp_path_factory.mktemp("small_model") / "model"
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def small_eager(small_folder: Path):
    return load_model(small_folder)


@pytest.fixture(scope="module")
def small_export(small_folder: Path, tmp_path_factory) -> Path:
    return export_onnx(small_folder, tmp_path_factory.mktemp("export") / "onnx", quantize=True)


@pytest.fixture(scope="module")
def photos(real_photos) -> list[Path]:
    """Three HRF and three CSDI photographs (different cameras and sizes)."""
    return real_photos[:3] + real_photos[-3:]


@pytest.fixture(scope="module")
def runtime(small_export: Path) -> OnnxZeroShot:
    return OnnxZeroShot(small_export, threads=1)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_the_export_holds_encoders_processor_prompts_and_runtime(small_export: Path, small_eager):
    names = {path.name for path in small_export.iterdir()}
    assert {*ENCODER_FILES[False], *ENCODER_FILES[True], SETTINGS_FILE, RUNTIME_FILE} <= names
    assert {"tokenizer.json", "processor_config.json", "image_processing_visionclip.py"} <= names
    assert not any(name.endswith(".tmp") for name in names)
    settings = json.loads((small_export / SETTINGS_FILE).read_text())
    model, _ = small_eager
    assert settings["zero_shot_tasks"] == model.zero_shot_tasks
    assert settings["prompt_templates"] == model.config.prompt_templates
    assert settings["logit_scale"] == pytest.approx(float(model.logit_scale_value().detach()))


def test_image_embeddings_match_eager_on_real_photographs(runtime: OnnxZeroShot, small_eager, photos):
    model, processor = small_eager
    pixels = processor.image_processor(photos, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        eager = model.encode_image(pixels).numpy()
    exported = runtime.encode_images(photos)
    assert cosines(eager, exported).min() >= 1 - COSINE_TOLERANCE
    assert cosines(eager[:1], eager[1:]).max() < 0.9999  # the photographs embed differently: a real comparison


def test_a_model_reading_chosen_hidden_states_exports_exactly(photos, tmp_path: Path):
    """`vision_feature_layers` at two strides (the stem's map and the last stage's, resized and stacked)."""
    torch.manual_seed(0)
    model, processor = build_model(dataclasses.replace(load_preset("small"), vision_feature_layers=[0, -1]))
    folder = tmp_path / "model"
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    runtime = OnnxZeroShot(export_onnx(folder, tmp_path / "onnx"), threads=1)
    pixels = processor.image_processor(photos, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        eager = model.encode_image(pixels).numpy()
    assert cosines(eager, runtime.encode_images(photos)).min() >= 1 - COSINE_TOLERANCE


def test_the_batch_axis_is_dynamic(runtime: OnnxZeroShot, photos):
    together = runtime.encode_images(photos, batch_size=len(photos))
    one_by_one = runtime.encode_images(photos, batch_size=1)
    assert together.shape == one_by_one.shape == (len(photos), runtime.settings["projection_dim"])
    assert cosines(together, one_by_one).min() >= 1 - COSINE_TOLERANCE


def test_text_embeddings_match_eager_for_any_length(runtime: OnnxZeroShot, small_eager):
    model, processor = small_eager
    texts = ["glaucoma", "A fundus photograph of moderate non-proliferative diabetic retinopathy with exudates. " * 3]
    for batch in (texts[:1], texts):  # one short text; a batch padded to a long one
        tokens = processor.tokenizer(batch, padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            eager = model.encode_text(tokens["input_ids"], tokens["attention_mask"]).numpy()
        assert cosines(eager, runtime.encode_texts(batch)).min() >= 1 - COSINE_TOLERANCE


def test_zero_shot_predictions_are_identical_to_eager(runtime: OnnxZeroShot, small_eager, photos):
    model, processor = small_eager
    requests = [{"task": task} for task in model.zero_shot_tasks] + [{"class_names": CLASS_NAMES}]
    for request in requests:
        eager = model.zero_shot(photos, processor, **request)
        exported = runtime.zero_shot(photos, **request)
        assert exported.class_names == eager.class_names
        assert exported.predictions == eager.predictions, request
        np.testing.assert_allclose(exported.probs, eager.probs.numpy(), atol=1e-4)


def test_int8_quantises_matrix_products_and_leaves_convolutions(small_export: Path, runtime: OnnxZeroShot, photos):
    image_int8, text_int8 = (onnx.load(small_export / name) for name in ENCODER_FILES[True])
    image_ops = {node.op_type for node in image_int8.graph.node}
    assert "DynamicQuantizeLinear" in image_ops and "ConvInteger" not in image_ops and "Conv" in image_ops
    assert "MatMulInteger" in {node.op_type for node in text_int8.graph.node}
    text_fp32, text_int8_file = (small_export / ENCODER_FILES[key][1] for key in (False, True))
    assert text_int8_file.stat().st_size < text_fp32.stat().st_size / 2
    quantized = OnnxZeroShot(small_export, int8=True, threads=1)
    fp32, int8 = runtime.encode_images(photos), quantized.encode_images(photos)
    assert cosines(fp32, int8).min() > 0.99
    result = quantized.zero_shot(photos, class_names=CLASS_NAMES)
    assert np.isfinite(result.probs).all() and result.probs.shape == (len(photos), len(CLASS_NAMES))


def test_the_runtime_needs_no_torch(small_export: Path, small_eager, photos, tmp_path: Path):
    model, processor = small_eager
    task = next(iter(model.zero_shot_tasks))
    args = [str(small_export), json.dumps([str(path) for path in photos]), task, str(tmp_path / "out.json")]
    completed = run_as_hub_user(TORCH_FREE_CHILD, args, tmp_path)
    assert completed.returncode == 0, completed.stderr[-4000:]
    found = json.loads((tmp_path / "out.json").read_text())
    assert found["loaded"] == ["torch"]  # only the block's None entry: no torch module, nothing of visionclip
    eager = model.zero_shot(photos, processor, task=task)
    assert found["predictions"] == eager.predictions
    np.testing.assert_allclose(found["probs"], eager.probs.numpy(), atol=1e-4)


# ------------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("missing", ["model.safetensors", "tokenizer.json", "processor_config.json", "config.json"])
def test_a_folder_missing_a_file_is_refused_naming_it(small_folder: Path, tmp_path: Path, missing: str):
    folder = tmp_path / "model"
    shutil.copytree(small_folder, folder)
    (folder / missing).unlink()
    with pytest.raises(ValueError, match=rf"not a saved VisionCLIP model folder: missing {missing}"):
        export_onnx(folder, tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()


def test_a_training_checkpoint_is_refused(tmp_path: Path):
    (tmp_path / "trainer_state.json").write_text("{}")
    with pytest.raises(ValueError, match="is a training checkpoint"):
        export_onnx(tmp_path, tmp_path.parent / "onnx")


def test_a_classifier_folder_is_refused(small_folder: Path, tmp_path: Path):
    folder = tmp_path / "model"
    shutil.copytree(small_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architectures": ["VisionCLIPForImageClassification"]}))
    with pytest.raises(ValueError, match="not a VisionCLIPModel"):
        export_onnx(folder, tmp_path / "onnx")


def test_output_that_would_destroy_something_is_refused(small_folder: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="would replace the model folder"):
        export_onnx(small_folder, small_folder)
    with pytest.raises(ValueError, match="would replace the model folder"):
        export_onnx(small_folder, small_folder.parent)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(ValueError, match="is not an ONNX export"):
        export_onnx(small_folder, tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_a_failed_export_leaves_the_previous_one_untouched(small_folder: Path, tmp_path: Path, monkeypatch):
    output = tmp_path / "onnx"
    output.mkdir()
    (output / SETTINGS_FILE).write_text('{"previous": true}')

    def fail_midway(folder: Path, *args) -> None:
        (folder / "image_encoder.onnx").write_bytes(b"half written")
        raise RuntimeError("disk full")

    monkeypatch.setattr(onnx_export, "_write_export", fail_midway)
    with pytest.raises(RuntimeError, match="disk full"):
        export_onnx(small_folder, output)
    assert [path.name for path in output.iterdir()] == [SETTINGS_FILE]
    assert not (tmp_path / "onnx.tmp").exists()


def test_the_command_line_names_bad_options_and_folders(tmp_path: Path, capsys):
    assert export_cli.main([str(tmp_path / "nowhere"), "--output", str(tmp_path / "onnx")]) == 2
    assert "model folder not found" in capsys.readouterr().err
    (tmp_path / "model").mkdir()
    assert export_cli.main([str(tmp_path / "model"), "--output", str(tmp_path / "onnx"), "--opset", "9"]) == 2
    assert "--opset must be an ONNX opset from 18 to 23" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_cli.main([str(tmp_path / "model")])  # --output is required
    assert "--output" in capsys.readouterr().err
