"""Create or update the Hugging Face Space from this folder, safely.

    python space/deploy.py your-name/visionclip-demo --model your-name/visionclip --dry-run
    python space/deploy.py your-name/visionclip-demo --model your-name/visionclip

Steps: stage the Space in a temporary folder: this folder's app files (app.py, fundus_demo.py, README.md with the
Space's front matter, requirements.txt, examples/*.jpg) and the code they import from this repository (the
`visionclip` package without caches, and the root's remote-code modules), nothing else. Check the staged app in a
fresh Python process outside this checkout (it must import from the staged copy alone). Print every staged file;
with --dry-run stop there. Otherwise create the Space (`HfApi.create_repo`, sdk gradio), set its VISIONCLIP_MODEL
variable to --model (a Hub model id: the Space has no local folder), and upload the staged folder with one
`HfApi.upload_folder`. The token comes from --token, HF_TOKEN or the stored `hf auth login`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from huggingface_hub import HfApi

from visionclip.hub import HUB_CODE_FILES, repo_id_problem

SPACE = Path(__file__).resolve().parent
REPOSITORY = SPACE.parent
APP_FILES = ("app.py", "fundus_demo.py", "README.md", "requirements.txt")
PACKAGE = "visionclip"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
MODEL_VARIABLE = "VISIONCLIP_MODEL"
CHECK = "import app, visionclip, sys; assert visionclip.__file__.startswith(sys.argv[1]), visionclip.__file__"


def stage(staging: Path) -> list[str]:
    """Copy the Space's files into `staging`; returns them as sorted relative POSIX paths."""
    staging.mkdir(parents=True)
    for name in APP_FILES:
        shutil.copyfile(SPACE / name, staging / name)
    (staging / "examples").mkdir()
    for path in sorted((SPACE / "examples").glob("*.jpg")):
        shutil.copyfile(path, staging / "examples" / path.name)
    for name in HUB_CODE_FILES:
        shutil.copyfile(REPOSITORY / name, staging / name)
    shutil.copytree(REPOSITORY / PACKAGE, staging / PACKAGE, ignore=IGNORED)
    return sorted(path.relative_to(staging).as_posix() for path in staging.rglob("*") if path.is_file())


def check_staged(staging: Path) -> None:
    """Import the staged app in a fresh process whose only copy of the code is the staged one (`ValueError` if
    that fails)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    done = subprocess.run(
        [sys.executable, "-c", CHECK, str(staging)], cwd=staging, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise ValueError(f"the staged Space does not import on its own:\n{done.stderr[-3000:]}")


def upload(staging: Path, space_id: str, model: str, private: bool, token: str | None) -> str:
    api = HfApi(token=token)
    api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.add_space_variable(space_id, MODEL_VARIABLE, model, description="model repository the demo loads")
    info = api.upload_folder(
        repo_id=space_id, repo_type="space", folder_path=str(staging), commit_message="Upload VisionCLIP demo"
    )
    return str(getattr(info, "commit_url", info))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("space_id", help="Hub Space repository, owner/name")
    parser.add_argument("--model", required=True, help="Hub model id the Space loads (publish.py uploads it)")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument("--dry-run", action="store_true", help="stage and check, print what would be uploaded")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the stored login)")
    args = parser.parse_args(argv)
    for name, value in (("space_id", args.space_id), ("--model", args.model)):
        problem = repo_id_problem(value)
        if problem:
            parser.error(f"{name}: {problem}")
    with tempfile.TemporaryDirectory(prefix="visionclip-space-") as workdir:
        staging = Path(workdir) / "space"
        files = stage(staging)
        try:
            check_staged(staging)
        except ValueError as error:
            print(f"{parser.prog}: error: {error}", file=sys.stderr)
            return 2
        print(f"staged and checked {len(files)} files for Space {args.space_id} ({MODEL_VARIABLE}={args.model}):")
        for relative in files:
            print(f"  {relative}  ({(staging / relative).stat().st_size:,} bytes)")
        if args.dry_run:
            print("dry run: nothing uploaded")
            return 0
        try:
            print(f"uploaded: {upload(staging, args.space_id, args.model, args.private, args.token)}")
        except Exception as error:  # authentication, permissions, network: say which
            print(
                f"{parser.prog}: error: upload to {args.space_id} failed ({type(error).__name__}: {error})",
                file=sys.stderr,
            )
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
