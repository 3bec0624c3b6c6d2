"""publish.py with HfApi patched: what would be uploaded, and that failures leave the local folder untouched."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import yaml
from huggingface_hub import ModelCard
from PIL import Image

import publish

REQUIRED_UPLOAD = {
    "model.safetensors",
    "config.json",
    "configuration_visionclip.py",
    "modeling_visionclip.py",
    "image_processing_visionclip.py",
    "processing_visionclip.py",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "README.md",
    "eval_results.json",
    "training_config.yaml",
    "examples/glaucoma.png",
    "examples/normal.png",
}


def synthetic_example(path: Path, tint: int) -> None:
    yy, xx = np.mgrid[:128, :128]
    image = np.zeros((128, 128, 3), dtype=np.uint8)
    image[(yy - 64) ** 2 + (xx - 64) ** 2 < 60**2] = (200, 90 + tint, 40)
    Image.fromarray(image).save(path)


@pytest.fixture
def model_folder(tiny_folder: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_folder, folder)
    (folder / "examples").mkdir()
    synthetic_example(folder / "examples" / "glaucoma.png", 0)
    synthetic_example(folder / "examples" / "normal.png", 30)
    (folder / "training_config.yaml").write_text(
        yaml.safe_dump({"preset": "tiny", "loss": "label_aware", "dataset": None})
    )
    held_out = {"glaucoma": {"auroc": 0.93, "positives": 40, "negatives": 400}}
    (folder / "eval_results.json").write_text(json.dumps({"training_summary": "test", "held_out_synthetic": held_out}))
    return folder


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_upload_sends_the_validated_folder_with_card_metadata(model_folder: Path, tmp_path: Path):
    before = digest(model_folder)
    results = tmp_path / "results.json"
    results.write_text(
        json.dumps(
            [
                {
                    "model": "tiny",
                    "dataset": "hrf",
                    "task": "hrf",
                    "mode": "zero-shot",
                    "split": "test",
                    "labels": ["healthy", "diabetic_retinopathy", "glaucoma"],
                    "source": "labels.csv",
                    "unreadable": [],
                    "metrics": {
                        "accuracy": 0.4,
                        "accuracy_ci": [0.2, 0.6],
                        "balanced_accuracy": 0.4,
                        "macro_f1": 0.3,
                        "auroc": 0.6,
                        "num_samples": 30,
                        "per_class": [],
                        "confusion_matrix": [],
                    },
                }
            ]
        )
    )
    uploaded = {}

    def capture(**kwargs):
        folder = Path(kwargs["folder_path"])
        uploaded["files"] = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
        uploaded["card"] = ModelCard.load(folder / "README.md")
        uploaded["repo_id"] = kwargs["repo_id"]
        return mock.Mock(commit_url="https://huggingface.co/me/vc/commit/1")

    with (
        mock.patch("huggingface_hub.HfApi.create_repo") as create,
        mock.patch("huggingface_hub.HfApi.upload_folder", side_effect=capture) as upload,
    ):
        assert publish.main([str(model_folder), "me/vc", "--private", "--eval-results", str(results)]) == 0
    create.assert_called_once_with("me/vc", private=True, exist_ok=True)
    upload.assert_called_once()
    assert uploaded["repo_id"] == "me/vc"
    assert uploaded["files"] >= REQUIRED_UPLOAD
    assert not any(name.endswith(publish.PICKLES) for name in uploaded["files"])
    data = uploaded["card"].data
    assert data.pipeline_tag == "zero-shot-image-classification" and data.license == "apache-2.0"
    assert data.library_name == "transformers" and "custom_code" in data.tags
    assert data.widget[0]["src"] == "https://huggingface.co/me/vc/resolve/main/examples/glaucoma.png"
    assert {r.dataset_name for r in data.eval_results} == {"VisionCLIP synthetic held-out split", "hrf"}
    assert 'MODEL = "me/vc"' in uploaded["card"].text
    assert digest(model_folder) == before  # the local folder is never modified


def test_dry_run_lists_files_and_uploads_nothing(model_folder: Path, capsys):
    with (
        mock.patch("huggingface_hub.HfApi.upload_folder") as upload,
        mock.patch("huggingface_hub.HfApi.create_repo") as create,
    ):
        assert publish.main([str(model_folder), "me/vc", "--dry-run"]) == 0
    upload.assert_not_called()
    create.assert_not_called()
    out = capsys.readouterr().out
    assert "model.safetensors" in out and "examples/normal.png" in out and "dry run" in out


def test_failed_upload_exits_nonzero_and_keeps_the_folder(model_folder: Path, capsys):
    before = digest(model_folder)
    with mock.patch("huggingface_hub.HfApi.create_repo", side_effect=OSError("401 Client Error: Unauthorized")):
        assert publish.main([str(model_folder), "me/vc"]) == 1
    assert "Unauthorized" in capsys.readouterr().err
    assert digest(model_folder) == before


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda folder: (folder / "model.safetensors").unlink(), "missing ['model.safetensors']"),
        (lambda folder: (folder / "weights.bin").write_bytes(b"x"), "pickle files"),
        (lambda folder: shutil.rmtree(folder / "examples"), "no examples"),
        (
            lambda folder: (folder / "modeling_visionclip.py").write_text("raise ImportError('broken')\n"),
            "validation failed",
        ),
    ],
)
def test_broken_folders_are_refused_before_upload(model_folder: Path, capsys, damage, message):
    damage(model_folder)
    with mock.patch("huggingface_hub.HfApi.upload_folder") as upload:
        assert publish.main([str(model_folder), "me/vc"]) == 2
    upload.assert_not_called()
    assert message in capsys.readouterr().err


def test_bad_repo_id_is_a_usage_error(model_folder: Path):
    with pytest.raises(SystemExit):
        publish.main([str(model_folder), "not-a-repo-id"])
