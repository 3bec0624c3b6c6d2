"""Where the project finds data that lives outside the package: the real photographs used for evaluation, and the
cache it writes (the embedded training data, converted pretrained towers)."""

from __future__ import annotations

import os
from pathlib import Path

REAL_DATA_ENV = "VISIONCLIP_REAL_DATA"
CACHE_ENV = "VISIONCLIP_CACHE"
REAL_DATA_BESIDE = Path("shared") / "data" / "fundus-real"  # beside a checkout: <parent>/shared/data/fundus-real


def real_data_candidates() -> tuple[Path, ...]:
    """Where the real photographs are looked for, in order: beside the checkout the package runs from (an editable
    install), beside the current folder, and the workplace's shared folder."""
    package_parent = Path(__file__).resolve().parents[1]
    return (
        package_parent.parent / REAL_DATA_BESIDE,
        Path.cwd().resolve().parent / REAL_DATA_BESIDE,
        Path("/work") / REAL_DATA_BESIDE,
    )


def real_data_dir() -> Path:
    """The folder of real, licensed fundus photographs (HRF, CSDI) used only for evaluation and preprocessing
    checks: `$VISIONCLIP_REAL_DATA`, else the first of `real_data_candidates()` that exists."""
    if os.environ.get(REAL_DATA_ENV):
        path = Path(os.environ[REAL_DATA_ENV])
        if not path.is_dir():
            raise FileNotFoundError(f"{REAL_DATA_ENV}={path} is not a folder")
        return path
    candidates = real_data_candidates()
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(
        f"Real fundus photographs not found; set {REAL_DATA_ENV} to the fundus-real folder "
        f"(looked in {', '.join(str(p) for p in candidates)})"
    )


def cache_dir() -> Path:
    """The project's cache: `$VISIONCLIP_CACHE`, else `~/.cache/visionclip`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "visionclip")
