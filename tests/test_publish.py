"""publish.py with HfApi patched: what would be uploaded, and that failures leave the local folder untouched."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import yaml
from huggingface_hub import ModelCard
from PIL import Image

from visionclip.cli import publish
from visionclip.hub import ENDPOINT_HANDLER_FILE, HUB_CODE_FILES, PICKLE_SUFFIXES, code_files_needed

REQUIRED_UPLOAD = {
    "model.safetensors",
    "config.json",
    *HUB_CODE_FILES,
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    ENDPOINT_HANDLER_FILE,  # added to a folder that lacks it
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
    assert not any(name.lower().endswith(PICKLE_SUFFIXES) for name in uploaded["files"])
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
        (lambda folder: shutil.rmtree(folder / "examples"), "no examples"),
        (lambda folder: (folder / "zeroshot_visionclip.py").unlink(), "missing ['zeroshot_visionclip.py']"),
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


def test_a_folder_saved_before_a_code_file_existed_needs_only_what_its_code_imports(model_folder: Path):
    modeling = model_folder / "modeling_visionclip.py"
    older = [line for line in modeling.read_text().splitlines() if "zeroshot_visionclip" not in line]
    modeling.write_text("\n".join(older) + "\n")
    (model_folder / "zeroshot_visionclip.py").unlink()
    assert "zeroshot_visionclip.py" not in code_files_needed(model_folder)
    assert "towers_visionclip.py" in code_files_needed(model_folder)  # still imported
    assert "zeroshot_visionclip.py" not in publish.check_folder(model_folder).files


@pytest.mark.parametrize("repo_id", ["not-a-repo-id", "../..", "me/..", "a/b/c", "me/vc.git", "me/na me"])
def test_bad_repo_id_is_a_usage_error(model_folder: Path, repo_id: str, capsys):
    with mock.patch("huggingface_hub.HfApi.upload_folder") as upload, pytest.raises(SystemExit):
        publish.main([str(model_folder), repo_id])
    upload.assert_not_called()
    assert f"repo_id {repo_id!r}" in capsys.readouterr().err


# ------------------------------------------------------------------------ only the allow-list is published
def uploaded_files(model_folder: Path, argv: list[str]) -> set[str] | None:
    """Run publish.py with the Hub patched; the relative paths it would upload (None when nothing was)."""
    uploaded = {}

    def capture(**kwargs):
        folder = Path(kwargs["folder_path"])
        uploaded["files"] = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        return mock.Mock(commit_url="https://huggingface.co/me/vc/commit/1")

    with (
        mock.patch("huggingface_hub.HfApi.create_repo"),
        mock.patch("huggingface_hub.HfApi.upload_folder", side_effect=capture),
    ):
        publish.main([str(model_folder), "me/vc", *argv])
    return uploaded.get("files")


def plant(folder: Path, relative: str, data: bytes = b"secret") -> None:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


PLANTED = {  # planted file -> (what the listing names, why it is left out)
    ".env": (".env", "hidden file"),
    "checkpoints/step-100/optimizer.pt": ("checkpoints/", "folder of 2 files"),
    "checkpoints/step-100/model.safetensors": ("checkpoints/", "folder of 2 files"),
    "optimizer.PT": ("optimizer.PT", "pickle"),
    "weights.bin": ("weights.bin", "pickle"),
    "examples/notes.txt": ("examples/notes.txt", "not a Hub model file"),
    "MODEL.SAFETENSORS": ("MODEL.SAFETENSORS", "not a Hub model file"),
    "private/patient-001.png": ("private/", "folder of 1 file"),
}


def test_only_allow_listed_files_are_uploaded_and_the_rest_is_named(model_folder: Path, capsys):
    for planted in PLANTED:
        plant(model_folder, planted)
    assert uploaded_files(model_folder, []) == REQUIRED_UPLOAD
    assert publish.main([str(model_folder), "me/vc", "--dry-run"]) == 0
    out = capsys.readouterr().out
    left_out = out[out.rindex("left out") :]
    for listed, reason in PLANTED.values():
        assert re.search(rf"^  {re.escape(listed)}  \(.*{reason}", left_out, flags=re.M), (listed, left_out)


@pytest.mark.parametrize(
    "link",
    ["secret.txt", "examples/patient.png", "model.safetensors", "linked-folder"],
)
def test_symlinks_leaving_the_folder_are_refused(model_folder: Path, tmp_path: Path, capsys, link: str):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / Path(link).name
    if link == "linked-folder":
        plant(outside, "id_rsa")
        target = outside
    elif link == "model.safetensors":
        (model_folder / link).rename(target)
    else:
        target.write_bytes((model_folder / "examples" / "normal.png").read_bytes())
    (model_folder / link).symlink_to(target)
    assert uploaded_files(model_folder, []) is None
    err = capsys.readouterr().err
    assert f"{link} is a symlink to {target}, outside {model_folder}" in err


def test_symlinks_inside_the_folder_publish_their_content(model_folder: Path):
    (model_folder / "examples" / "again.png").symlink_to(model_folder / "examples" / "normal.png")
    assert uploaded_files(model_folder, []) == REQUIRED_UPLOAD | {"examples/again.png"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is not valid JSON"),
        ("{not json", "is not valid JSON"),
        ("{}", "expected a list of result entries"),
        ("[]", "expected a list of result entries"),
        ("[1]", "entry 1 is not an object"),
        ('[{"model": "tiny"}]', "entry 1 lacks"),
        ('[{"model": "tiny", "dataset": "hrf", "mode": "zero-shot", "metrics": []}]', "entry 1 lacks"),
    ],
    ids=["empty", "malformed", "object", "empty-list", "number", "no-metrics", "metrics-not-object"],
)
def test_unusable_eval_results_are_refused_naming_the_file(
    model_folder: Path, tmp_path: Path, capsys, content, message
):
    results = tmp_path / "results.json"
    results.write_text(content)
    with mock.patch("huggingface_hub.HfApi.upload_folder") as upload:
        assert publish.main([str(model_folder), "me/vc", "--eval-results", str(results)]) == 2
    upload.assert_not_called()
    err = capsys.readouterr().err
    assert f"--eval-results {results}" in err and message in err


def test_eval_results_keep_every_compared_model_chosen_first_random_last(tmp_path: Path):
    entry = {"dataset": "hrf", "task": "hrf", "mode": "zero-shot", "split": "test", "labels": [], "source": "x"}
    names = ["random init (same architecture)", "small-pretrained", "runs/visionclip/model", "runs/previous/model"]
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{**entry, "model": name, "metrics": {"auroc": 0.5}} for name in names]))
    chosen = publish.read_eval_results(results, "runs/visionclip/model")
    assert [e["model"] for e in chosen] == [
        "runs/visionclip/model",
        "small-pretrained",
        "runs/previous/model",
        "random init (same architecture)",
    ]
