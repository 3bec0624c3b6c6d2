"""Publish a trained VisionCLIP folder to the Hugging Face Hub, safely.

    python publish.py runs/visionclip/model your-name/visionclip --dry-run
    python publish.py runs/visionclip/model your-name/visionclip --eval-results eval_results/results.json

Steps: copy the folder's Hub model files (the allow-list in `visionclip/hub.py`: config, weights, remote code,
processor and tokenizer files, card, examples, results JSON, training config) to a staging folder, naming everything
left out (checkpoints, pickles, hidden files such as .env, anything else); refuse symlinks that lead out of the
folder. The original is never modified. Then add real-data results from `eval_zeroshot.py` if given, re-render the
model card for the repo (widget examples, model-index), validate the staged folder in a fresh Python process
outside this checkout (AutoModel / AutoProcessor with trust_remote_code, the zero-shot pipeline, and the card's own
code snippet), and upload it with one `HfApi.upload_folder`. The token comes from --token, HF_TOKEN or the stored
`hf auth login`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi

from ..cards import RESULTS_FILE, render_model_card
from ..finetune.export import is_classifier_folder, render_classifier_card
from ..hub import (
    ENDPOINT_HANDLER_FILE,
    HUB_FOLDERS,
    add_endpoint_handler,
    code_files_needed,
    repo_id_problem,
    why_left_out,
)

REQUIRED = ("config.json", "model.safetensors", "processor_config.json", "tokenizer.json")  # and code_files_needed
CLASSIFIER_REQUIRED = ("config.json", "model.safetensors", "preprocessor_config.json")
RESULT_KEYS = ("model", "dataset", "mode", "metrics")
RANDOM_BASELINE = "random init (same architecture)"

VALIDATE = """
import sys
from transformers import AutoModel, AutoProcessor, pipeline
folder, example = sys.argv[1], sys.argv[2]
model = AutoModel.from_pretrained(folder, trust_remote_code=True)
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
for task in model.zero_shot_tasks:
    model.zero_shot([example], processor, task=task)
scores = pipeline("zero-shot-image-classification", model=folder, trust_remote_code=True)(
    example, candidate_labels=["glaucoma", "a normal fundus"])
assert abs(sum(s["score"] for s in scores) - 1) < 1e-4, scores
sys.path.insert(0, folder)  # the Inference Endpoints toolkit's way of loading handler.py
from handler import EndpointHandler
answer = EndpointHandler(folder)({"inputs": open(example, "rb").read(), "parameters": {"candidate_labels": ["glaucoma", "a normal fundus"]}})
assert "error" not in answer, answer
print("ok")
"""

VALIDATE_CLASSIFIER = """
import sys
from transformers import AutoModelForImageClassification, pipeline
folder, example = sys.argv[1], sys.argv[2]
model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True)
scores = pipeline("image-classification", model=folder, trust_remote_code=True)(example, top_k=None)
assert sorted(s["label"] for s in scores) == sorted(model.config.id2label.values()), scores
assert abs(sum(s["score"] for s in scores) - 1) < 1e-4, scores
print("ok")
"""


@dataclass
class Selection:
    """The folder's files on the Hub allow-list (relative POSIX paths), and what is left out with the reason."""

    files: list[str] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)


def _refuse_links_leaving(path: Path, folder: Path, relative: str) -> None:
    target = Path(os.path.realpath(path))
    if not target.is_relative_to(folder.resolve()):
        raise ValueError(
            f"{relative} is a symlink to {target}, outside {folder}: refusing to publish a folder that links out of "
            "itself (copy the file in, or remove the link)"
        )


def _count_files(folder: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(folder))


def select_files(folder: Path) -> Selection:
    """Walk `folder` without following symlinks: allow-listed files are published, the rest is named with the
    reason; a symlink whose target lies outside `folder` is refused (`ValueError`)."""
    selection = Selection()
    for current, dirs, names in os.walk(folder):
        here = Path(current)
        for name in sorted(names):
            path = here / name
            relative = path.relative_to(folder).as_posix()
            if path.is_symlink():
                _refuse_links_leaving(path, folder, relative)
            reason = why_left_out(relative) or (None if path.is_file() else "broken symlink")
            if reason:
                selection.left_out.append((relative, reason))
            else:
                selection.files.append(relative)
        kept = []
        for name in sorted(dirs):
            path = here / name
            relative = path.relative_to(folder).as_posix()
            if path.is_symlink():
                _refuse_links_leaving(path, folder, relative)
                selection.left_out.append((relative + "/", "symlinked folder, not followed"))
            elif relative in HUB_FOLDERS:
                kept.append(name)
            else:
                count = _count_files(path)
                selection.left_out.append((relative + "/", f"folder of {count} file{'' if count == 1 else 's'}"))
        dirs[:] = kept
    return selection


def check_folder(folder: Path) -> Selection:
    """What of `folder` would be published; `ValueError` when it is not a complete VisionCLIP folder (a base model's
    or a `finetune.py` classifier's)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"Model folder not found: {folder}")
    selection = select_files(folder)
    classifier = is_classifier_folder(folder)
    required = (*(CLASSIFIER_REQUIRED if classifier else REQUIRED), *code_files_needed(folder))
    missing = [name for name in required if name not in selection.files]
    if missing:
        kind = "VisionCLIP classifier" if classifier else "VisionCLIP"
        raise ValueError(f"{folder} is not a complete {kind} folder: missing {missing}")
    return selection


def read_eval_results(path: Path, model_name: str | None) -> list[dict[str, Any]]:
    """The entries of `eval_zeroshot.py`'s results.json: the published model's (default: the first model's) first,
    then the models it was compared with (`--compare`), the random baseline last; `ValueError` naming the file when
    it is not such a file."""
    where = f"--eval-results {path}"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{where} is not valid JSON ({error}); give the results.json of eval_zeroshot.py") from None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{where}: expected a list of result entries (the results.json of eval_zeroshot.py)")
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: entry {number} is not an object")
        if any(key not in entry for key in RESULT_KEYS) or not isinstance(entry["metrics"], dict):
            raise ValueError(f"{where}: entry {number} lacks one of {list(RESULT_KEYS)} (metrics an object)")
    model = model_name or entries[0]["model"]
    if not any(e["model"] == model for e in entries):
        raise ValueError(f"{where} has no results for model {model!r}")
    return sorted(entries, key=lambda e: (e["model"] != model, e["model"] == RANDOM_BASELINE))


def stage(
    folder: Path, selection: Selection, staging: Path, repo_id: str, real_results: list[dict[str, Any]] | None
) -> None:
    """Copy the selected files (the original is never modified), merge real-data results, and re-render
    README.md for the repo."""
    for relative in selection.files:
        (staging / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / relative, staging / relative)
    if is_classifier_folder(staging):
        if real_results is not None:
            raise ValueError("--eval-results is for a base model: a classifier folder carries its own results")
        (staging / "README.md").write_text(str(render_classifier_card(staging, repo_id)))
        return
    if not (staging / ENDPOINT_HANDLER_FILE).is_file():  # a folder trained before the handler existed
        add_endpoint_handler(staging)
    if real_results is not None:
        results_file = staging / RESULTS_FILE
        results = json.loads(results_file.read_text()) if results_file.is_file() else {}
        results["real_datasets"] = real_results
        results_file.write_text(json.dumps(results, indent=2))
    render_model_card(staging, model_path=repo_id, repo_id=repo_id).save(staging / "README.md")


def card_snippet(readme: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    if not blocks:
        raise ValueError("README.md has no python code block to validate")
    return blocks[0]


def validate(staging: Path, repo_id: str) -> None:
    """Load and run the staged folder as a Hub user would: fresh process, no checkout on the path, offline."""
    examples = sorted((staging / "examples").glob("*.png"))
    if not examples:
        raise ValueError(f"{staging} has no examples/*.png for the widget and the card snippet")
    snippet = card_snippet((staging / "README.md").read_text()).replace(f'"{repo_id}"', repr(str(staging)))
    with tempfile.TemporaryDirectory(prefix="visionclip-validate-") as workdir:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(HF_HUB_OFFLINE="1", HF_HOME=str(Path(workdir) / "hf"))
        checks = VALIDATE_CLASSIFIER if is_classifier_folder(staging) else VALIDATE
        for name, code, args in (
            ("loading and pipeline", checks, [str(staging), str(examples[0])]),
            ("model card snippet", snippet, []),
        ):
            script = Path(workdir) / "check.py"
            script.write_text(code)
            done = subprocess.run(
                [sys.executable, str(script), *args], cwd=workdir, env=env, capture_output=True, text=True
            )
            if done.returncode != 0:
                raise ValueError(f"validation failed ({name}):\n{done.stderr[-3000:]}")


def upload(staging: Path, repo_id: str, private: bool, token: str | None) -> str:
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(staging), commit_message="Upload VisionCLIP model")
    return str(getattr(info, "commit_url", info))


def print_selection(staging: Path, selection: Selection, repo_id: str) -> None:
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    print(f"staged and validated {len(files)} files for {repo_id}:")
    for path in files:
        print(f"  {path.relative_to(staging).as_posix()}  ({path.stat().st_size:,} bytes)")
    if selection.left_out:
        print(f"left out {len(selection.left_out)} paths (only the Hub model files are published):")
        for relative, reason in selection.left_out:
            print(f"  {relative}  ({reason})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="the Hub-ready folder written by train.py or finetune.py")
    parser.add_argument("repo_id", help="Hub model repository, owner/name")
    parser.add_argument("--eval-results", type=Path, help="results.json from eval_zeroshot.py to add to the card")
    parser.add_argument("--model-name", help="which model's rows of --eval-results to use (default: the first)")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--dry-run", action="store_true", help="stage and validate, print what would be uploaded")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the stored login)")
    args = parser.parse_args(argv)
    problem = repo_id_problem(args.repo_id)
    if problem:
        parser.error(problem)
    if args.eval_results is not None and not args.eval_results.is_file():
        parser.error(f"--eval-results {args.eval_results} does not exist")
    with tempfile.TemporaryDirectory(prefix="visionclip-publish-") as workdir:
        staging = Path(workdir) / "staging"
        try:
            selection = check_folder(args.folder)
            real_results = read_eval_results(args.eval_results, args.model_name) if args.eval_results else None
            stage(args.folder, selection, staging, args.repo_id, real_results)
            validate(staging, args.repo_id)
        except (ValueError, FileNotFoundError) as error:
            print(f"{parser.prog}: error: {error}", file=sys.stderr)
            return 2
        print_selection(staging, selection, args.repo_id)
        if args.dry_run:
            print("dry run: nothing uploaded")
            return 0
        try:
            print(f"uploaded: {upload(staging, args.repo_id, args.private, args.token)}")
        except Exception as error:  # authentication, permissions, network: say which, keep the local folder
            print(
                f"{parser.prog}: error: upload to {args.repo_id} failed ({type(error).__name__}: {error}); "
                f"{args.folder} is unchanged",
                file=sys.stderr,
            )
            return 1
    return 0
