"""Where the project finds data that lives outside the repository."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
_REAL_DATA_CANDIDATES = (
    REPO_ROOT.parent / "shared" / "data" / "fundus-real",
    Path("/work/shared/data/fundus-real"),
)


def real_data_dir() -> Path:
    """The folder of real, licensed fundus photographs (HRF, CSDI) used only for evaluation and preprocessing
    checks: `$VISIONCLIP_REAL_DATA`, else `../shared/data/fundus-real` beside the checkout."""
    if os.environ.get("VISIONCLIP_REAL_DATA"):
        path = Path(os.environ["VISIONCLIP_REAL_DATA"])
        if not path.is_dir():
            raise FileNotFoundError(f"VISIONCLIP_REAL_DATA={path} is not a folder")
        return path
    for path in _REAL_DATA_CANDIDATES:
        if path.is_dir():
            return path
    raise FileNotFoundError(
        "Real fundus photographs not found; set VISIONCLIP_REAL_DATA to the fundus-real folder "
        f"(looked in {', '.join(str(p) for p in _REAL_DATA_CANDIDATES)})"
    )
