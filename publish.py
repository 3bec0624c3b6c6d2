"""Publish a trained VisionCLIP folder to the Hugging Face Hub, safely.

    python publish.py runs/visionclip-small/model your-name/visionclip-small --dry-run
    python publish.py runs/visionclip-small/model your-name/visionclip-small --eval-results eval_results/results.json

Steps: copy the folder to a staging folder (the original is never modified), add real-data results from
`eval_zeroshot.py` if given, re-render the model card for the repo (widget examples, model-index), validate the
staged folder in a fresh Python process outside this checkout (AutoModel / AutoProcessor with trust_remote_code,
the zero-shot pipeline, and the card's own code snippet), then upload it with one `HfApi.upload_folder`.
The token comes from --token, HF_TOKEN or the stored `hf auth login`.
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
from pathlib import Path

REQUIRED = (
    "config.json",
    "model.safetensors",
    "configuration_visionclip.py",
    "modeling_visionclip.py",
    "image_processing_visionclip.py",
    "processing_visionclip.py",
    "processor_config.json",
    "tokenizer.json",
)
PICKLES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")

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
print("ok")
"""


def check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"Model folder not found: {folder}")
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"{folder} is not a complete VisionCLIP folder: missing {missing}")
    pickles = [p.name for p in folder.rglob("*") if p.suffix in PICKLES]
    if pickles:
        raise ValueError(f"{folder} holds pickle files {pickles}: publish safetensors only")


def stage(folder: Path, staging: Path, repo_id: str, eval_results: Path | None, model_name: str | None) -> None:
    """Copy the folder, merge real-data results, and re-render README.md for the repo."""
    from visionclip.cards import RESULTS_FILE, render_model_card

    shutil.copytree(folder, staging, ignore=shutil.ignore_patterns("*.tmp", ".cache"))
    if eval_results is not None:
        entries = json.loads(eval_results.read_text())
        model = model_name or entries[0]["model"]
        chosen = [e for e in entries if e["model"] in (model, "random init (same architecture)")]
        if not any(e["model"] == model for e in chosen):
            raise ValueError(f"{eval_results} has no results for model {model!r}")
        results_file = staging / RESULTS_FILE
        results = json.loads(results_file.read_text()) if results_file.is_file() else {}
        results["real_datasets"] = sorted(chosen, key=lambda e: e["model"] != model)
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
        for name, code, args in (
            ("loading and pipeline", VALIDATE, [str(staging), str(examples[0])]),
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
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(staging), commit_message="Upload VisionCLIP model")
    return str(getattr(info, "commit_url", info))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="the Hub-ready folder written by train.py")
    parser.add_argument("repo_id", help="Hub model repository, owner/name")
    parser.add_argument("--eval-results", type=Path, help="results.json from eval_zeroshot.py to add to the card")
    parser.add_argument("--model-name", help="which model's rows of --eval-results to use (default: the first)")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--dry-run", action="store_true", help="stage and validate, print what would be uploaded")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the stored login)")
    args = parser.parse_args(argv)
    if args.repo_id.count("/") != 1 or not all(args.repo_id.split("/")):
        parser.error(f"repo_id must look like owner/name, got {args.repo_id!r}")
    if args.eval_results is not None and not args.eval_results.is_file():
        parser.error(f"--eval-results {args.eval_results} does not exist")
    with tempfile.TemporaryDirectory(prefix="visionclip-publish-") as workdir:
        staging = Path(workdir) / "staging"
        try:
            check_folder(args.folder)
            stage(args.folder, staging, args.repo_id, args.eval_results, args.model_name)
            validate(staging, args.repo_id)
        except (ValueError, FileNotFoundError) as error:
            print(f"publish.py: error: {error}", file=sys.stderr)
            return 2
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        print(f"staged and validated {len(files)} files for {args.repo_id}:")
        for path in files:
            print(f"  {path.relative_to(staging)}  ({path.stat().st_size:,} bytes)")
        if args.dry_run:
            print("dry run: nothing uploaded")
            return 0
        try:
            print(f"uploaded: {upload(staging, args.repo_id, args.private, args.token)}")
        except Exception as error:  # authentication, permissions, network: say which, keep the local folder
            print(
                f"publish.py: error: upload to {args.repo_id} failed ({type(error).__name__}: {error}); "
                f"{args.folder} is unchanged",
                file=sys.stderr,
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
