"""Regenerate the figures under docs/figures that do not come from a benchmark.

python docs/make_figures.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from image_processing_visionclip import find_field_of_view, load_fundus_image
from visionclip.paths import real_data_dir

ROOT = Path(__file__).resolve().parents[1]

FIGURES = ROOT / "docs" / "figures"


def fov_crop_sheet(paths: list[Path], tile: int = 112, columns: int = 14) -> Image.Image:
    """Every photograph with its detected field-of-view box drawn in green."""
    rows = math.ceil(len(paths) / columns)
    sheet = Image.new("RGB", (columns * tile, rows * tile), (40, 40, 40))
    for index, path in enumerate(paths):
        image = load_fundus_image(path)
        ImageDraw.Draw(image).rectangle(find_field_of_view(image), outline=(0, 255, 0), width=4)
        image.thumbnail((tile - 4, tile - 4))
        sheet.paste(image, ((index % columns) * tile + 2, (index // columns) * tile + 2))
    return sheet


def main() -> int:
    FIGURES.mkdir(parents=True, exist_ok=True)
    paths = sorted(real_data_dir().glob("*/images/*.jpg"))
    if not paths:
        print(f"no photographs under {real_data_dir()}", file=sys.stderr)
        return 1
    fov_crop_sheet(paths).save(FIGURES / "fov_crop_real.png", optimize=True)
    print(f"wrote {FIGURES / 'fov_crop_real.png'} ({len(paths)} photographs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
