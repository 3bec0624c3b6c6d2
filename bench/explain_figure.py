"""The README's figure of where the model looks: heatmap overlays on real photographs and on generated ones.

Top rows: HRF photographs (Budai et al., 2013; CC BY 4.0) with diabetic retinopathy and glaucoma, each explained
for its own label by the model's `diagnosis` task. Bottom rows: held-out generated photographs, each explained for a
finding it shows (the finding's prompt ensemble), with the lesion mask outlined in cyan. One row pair per method.

    python bench/explain_figure.py --model runs/visionclip/model --out docs/figures/explain_overlays.png
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import torch
from PIL import Image

from visionclip.explain import load_explainable, overlay, tile_grid
from visionclip.explain.measure import finding_questions, generated_cases, shows
from visionclip.paths import real_data_dir
from visionclip.shards import atomic_write_bytes
from visionclip.zeroshot.tasks import PRESENT

REAL_LABELS = {"diabetic_retinopathy": "diabetic retinopathy", "glaucoma": "glaucoma"}
GENERATED_FINDINGS = {"diabetic_retinopathy": "DR", "amd": "AMD", "glaucoma": "glaucoma", "chorioretinopathy": "CSC"}
SHORT = {"diabetic retinopathy": "DR", "glaucoma": "glaucoma"}
MAX_BYTES = 500_000


def real_photographs(per_label: int) -> list[tuple[Path, str]]:
    """The first `per_label` HRF photographs of each label in `REAL_LABELS`, with the diagnosis class to explain."""
    folder = real_data_dir() / "hrf"
    with open(folder / "labels.csv", newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: row["file"])
    chosen = []
    for label, class_name in REAL_LABELS.items():
        chosen += [(folder / row["file"], class_name) for row in rows if row["label"] == label][:per_label]
    return chosen


def real_tiles(model, processor, method: str, per_label: int, side: int, upscale: int = 1) -> list[Image.Image]:
    tiles = []
    for path, class_name in real_photographs(per_label):
        result = model.explain([path], processor, task="diagnosis", method=method, **_options(upscale))
        column = result.class_names.index(class_name)
        caption = f"{method}: HRF {path.stem}, {SHORT[class_name]} p={float(result.probs[0, column]):.2f}"
        tiles.append(overlay(Image.open(path).convert("RGB"), result.heatmaps[0][column], caption, max_side=side))
    return tiles


def generated_tiles(model, processor, method: str, cases, side: int, upscale: int = 1) -> list[Image.Image]:
    questions = {question.name: question for question in finding_questions()}
    tiles = []
    for name, short in GENERATED_FINDINGS.items():
        question = questions[name]
        case = next(case for case in cases if shows(case, question.column))
        result = model.explain([case.image], processor, text=question.prompts, method=method, **_options(upscale))
        column = result.class_names.index(PRESENT)
        photo = Image.open(io.BytesIO(case.image)).convert("RGB")
        caption = f"{method}: generated, {short} p={float(result.probs[0, column]):.2f}"
        mask = case.masks[question.column]
        tiles.append(overlay(photo, result.heatmaps[0][column], caption, lesion_mask=mask, max_side=side))
    return tiles


def _options(upscale: int) -> dict[str, int]:
    return {"upscale": upscale} if upscale != 1 else {}


def encoded(figure: Image.Image) -> bytes:
    """PNG bytes of the figure, reduced to 256 colours when the full-colour file is over `MAX_BYTES`."""
    for image in (figure, figure.quantize(256, method=Image.Quantize.MEDIANCUT)):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= MAX_BYTES:
            return buffer.getvalue()
    raise ValueError(f"the figure is over {MAX_BYTES:,} bytes even in 256 colours: use a smaller --tile")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/visionclip/model")
    parser.add_argument("--out", type=Path, default=Path("docs/figures/explain_overlays.png"))
    parser.add_argument("--methods", nargs="+", default=["cam", "gradcam"], choices=["similarity", "cam", "gradcam"])
    parser.add_argument("--tile", type=int, default=230, help="tile side in pixels")
    parser.add_argument("--cases", type=int, default=200, help="held-out generated images to pick examples from")
    parser.add_argument("--upscale", type=int, default=1, help="maps from the image enlarged this many times")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model, processor = load_explainable(args.model, options=["upscale"] if args.upscale != 1 else [])
    cases = list(generated_cases(args.cases))
    tiles = []
    for method in args.methods:
        tiles += real_tiles(model, processor, method, 2, args.tile, args.upscale)
        tiles += generated_tiles(model, processor, method, cases, args.tile, args.upscale)
    figure = tile_grid(tiles, columns=4, side=args.tile)
    atomic_write_bytes(args.out, encoded(figure))
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes, {figure.width}x{figure.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
