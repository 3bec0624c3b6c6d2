"""What a VisionCLIP model repository on the Hub holds (the allow-list that `publish.py` uploads), and which
repository ids the publishing commands accept.

Anything else in a model folder (checkpoints, optimizer state, pickles, hidden files such as `.env`, notes) is
left out, so a folder that gathered more than the model cannot leak it.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers.dynamic_module_utils import get_relative_imports

from .cards import RESULTS_FILE
from .resources import ENDPOINT_HANDLER, data_path

# What `trust_remote_code` starts from; each imports the rest of `HUB_CODE_FILES` that it needs.
ENTRY_CODE_FILES = (
    "configuration_visionclip.py",
    "modeling_visionclip.py",
    "image_processing_visionclip.py",
    "processing_visionclip.py",
)
# The remote code `trust_remote_code` loads: the repository root's model files, saved beside the weights.
HUB_CODE_FILES = (*ENTRY_CODE_FILES, "explaining_visionclip.py", "zeroshot_visionclip.py", "towers_visionclip.py")


def code_files_needed(folder: str | Path) -> list[str]:
    """The remote-code files a saved folder's own code needs: the entry points and, recursively, the files they
    import relatively. A folder saved by an older version needs what its code imports, not today's whole list."""
    folder, needed, queue = Path(folder), [], list(ENTRY_CODE_FILES)
    while queue:
        name = queue.pop(0)
        if name in needed:
            continue
        needed.append(name)
        if (folder / name).is_file():
            queue += [f"{module}.py" for module in get_relative_imports(str(folder / name))]
    return needed


WEIGHT_FILES = ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json")
PROCESSOR_FILES = (
    "processor_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
)
# The Inference Endpoints handler (package data `endpoint/handler.py`): a base model folder carries it
ENDPOINT_HANDLER_FILE = "handler.py"
CARD_FILE = "README.md"
EXAMPLE_FILES = ("examples/*.png", "examples/*.jpg", "examples/*.jpeg")
TRAINING_CONFIG_FILE = "training_config.yaml"
CONFUSION_MATRIX_FILE = "confusion_matrix.png"  # a `finetune.py` classifier's cross-validated confusion matrix
HUB_FILE_PATTERNS = (
    "config.json",
    *HUB_CODE_FILES,
    *WEIGHT_FILES,
    *PROCESSOR_FILES,
    ENDPOINT_HANDLER_FILE,
    CARD_FILE,
    *EXAMPLE_FILES,
    RESULTS_FILE,
    TRAINING_CONFIG_FILE,
    CONFUSION_MATRIX_FILE,
)
HUB_FOLDERS = ("examples",)  # the only sub-folder a model repository has
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def is_hub_file(relative_path: str) -> bool:
    """Whether `relative_path` (POSIX, relative to the model folder) is on the allow-list (case-sensitive)."""
    path = PurePosixPath(relative_path)
    return any(
        len(path.parts) == len(PurePosixPath(pattern).parts) and path.match(pattern) for pattern in HUB_FILE_PATTERNS
    )


def why_left_out(relative_path: str) -> str | None:
    """None for a Hub file, else the reason it is not published."""
    if is_hub_file(relative_path):
        return None
    name = PurePosixPath(relative_path).name
    if name.lower().endswith(PICKLE_SUFFIXES):
        return "pickle file: only safetensors weights are published"
    if name.startswith("."):
        return "hidden file (may hold secrets)"
    return "not a Hub model file"


def add_endpoint_handler(folder: Path) -> None:
    """Write the Inference Endpoints handler (`handler.py`) into a base VisionCLIP model folder."""
    shutil.copyfile(data_path(ENDPOINT_HANDLER), Path(folder) / ENDPOINT_HANDLER_FILE)


def repo_id_problem(repo_id: str) -> str | None:
    """Why `repo_id` is not a Hub repository id of the form owner/name (huggingface_hub's own rules), or None."""
    if repo_id.count("/") != 1:
        return f"repo_id {repo_id!r} must look like owner/name"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        return f"repo_id {repo_id!r} is not a valid Hub repository id: {error}"
    return None
