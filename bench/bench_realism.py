"""Realism check: generated fundus images beside real photographs, and statistics computed the same way on both.

Writes ``realism_sheet.png`` (generated | real), ``realism_colour_stats.png`` (the per-image statistics as box
plots), ``findings_gallery.png`` (one example per finding) and ``masks_example.png`` (what each positive label's mask
covers) to ``docs/figures`` (or ``--figures``), and prints two tables. The field of view is where max(R, G, B) > 25,
in every set alike.

* colour: mean and standard deviation of each RGB channel inside the field, and the green/red ratio of the means
  (about 0.3 for HRF-like orange-red photographs, 0.8 for the yellow-green CSDI ones);
* clarity and framing: green detail (mean absolute difference between horizontal neighbours of the green channel
  inside the field, after scaling the field to 256 px across; media haze and blur lower it), the share of the frame
  the field covers, the share of images whose field is cut by the frame's top/bottom or by its sides, and the field
  centre's offset from the frame centre (in frame heights).

The real photographs (``visionclip.paths.real_data_dir()``: HRF, CSDI and MFIDDR) are used only for this visual and
statistical comparison, never to tune a model.

    python bench/bench_realism.py [--count 120] [--real-dir DIR] [--figures DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from visionclip.paths import real_data_dir
from visionclip.schema import FINDING_COLUMNS
from visionclip.synthetic import FundusGenerator
from visionclip.synthetic.camera import DEGRADATIONS
from visionclip.synthetic.writer import summarise

ROOT = Path(__file__).resolve().parents[1]

FIGURES = ROOT / "docs" / "figures"
REAL_SETS = ("hrf", "csdi", "mfiddr")
FIELD_THRESHOLD = 25
DETAIL_WIDTH = 256
CUT_SHARE = 0.1
COLOUR_COLUMNS = ("mean R", "mean G", "mean B", "std R", "std G", "std B", "G/R")
FRAMING_COLUMNS = ("green detail", "field share", "cut top/bottom", "cut sides", "centre offset")
SET_COLOURS = {"hrf": "tab:red", "csdi": "tab:olive", "mfiddr": "tab:green", "generated": "tab:blue"}


def field_mask(pixels: np.ndarray) -> np.ndarray:
    return pixels.max(2) > FIELD_THRESHOLD


def green_detail(image: Image.Image, mask: np.ndarray) -> float:
    """Fine detail of the green channel (vessels, lesions) with the field scaled to DETAIL_WIDTH px across."""
    columns, rows = np.flatnonzero(mask.any(0)), np.flatnonzero(mask.any(1))
    box = (int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1)
    scale = DETAIL_WIDTH / (box[2] - box[0])
    size = (DETAIL_WIDTH, max(int(round((box[3] - box[1]) * scale)), 8))
    green = np.asarray(image.crop(box).resize(size, Image.Resampling.BOX), dtype=np.float32)[..., 1]
    inside = np.asarray(Image.fromarray(mask[box[1] : box[3], box[0] : box[2]]).resize(size)) > 0
    # Two pixels away from the field's edge, whose black border would count as detail.
    inside[:2] = inside[-2:] = False
    inside = inside & np.roll(inside, 2, 0) & np.roll(inside, -2, 0) & np.roll(inside, 2, 1) & np.roll(inside, -2, 1)
    steps = np.abs(np.diff(green, axis=1))
    return float(steps[inside[:, 1:]].mean())


def image_stats(image: Image.Image) -> np.ndarray | None:
    """Every statistic of one photograph in COLOUR_COLUMNS + FRAMING_COLUMNS order; None if it has no field."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    mask = field_mask(pixels)
    if mask.sum() < 100:
        return None
    inside = pixels[mask]
    mean = inside.mean(0)
    height, width = mask.shape
    # Cut: the field covers over 10% of a line within 3 px of the frame's edge (a camera's small white marker
    # in a corner does not count).
    edge = [mask[:3].mean(1).max(), mask[-3:].mean(1).max(), mask[:, :3].mean(0).max(), mask[:, -3:].mean(0).max()]
    cut_rows, cut_sides = max(edge[:2]) > CUT_SHARE, max(edge[2:]) > CUT_SHARE
    ys, xs = np.nonzero(mask)
    offset = np.hypot(xs.mean() - width / 2, ys.mean() - height / 2) / height
    colour = [*mean, *inside.std(0), mean[1] / max(mean[0], 1.0)]
    return np.array([*colour, green_detail(image, mask), mask.mean(), cut_rows, cut_sides, offset], np.float64)


def load_real(real_dir: Path) -> dict[str, list[Image.Image]]:
    return {
        name: [Image.open(f).convert("RGB") for f in sorted((real_dir / name / "images").glob("*.jpg"))]
        for name in REAL_SETS
    }


def square(image: Image.Image, size: int) -> Image.Image:
    """Letterbox a photograph onto a black square (real photos are 3:2 or nearly square)."""
    image = image.copy()
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (size, size))
    canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return canvas


def grid(images: list[Image.Image], columns: int, thumb: int, captions: list[str] | None = None) -> Image.Image:
    rows = -(-len(images) // columns)
    caption = 16 if captions else 0
    sheet = Image.new("RGB", (columns * thumb, rows * (thumb + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, image in enumerate(images):
        x, y = (i % columns) * thumb, (i // columns) * (thumb + caption)
        sheet.paste(square(image, thumb), (x, y))
        if captions:
            draw.text((x + 3, y + thumb + 2), captions[i][:38], fill="black")
    return sheet


def side_by_side(generated: Image.Image, real: Image.Image) -> Image.Image:
    gap, title = 24, 28
    height = max(generated.height, real.height) + title
    sheet = Image.new("RGB", (generated.width + gap + real.width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 8), "generated (visionclip.synthetic, default mix)", fill="black")
    draw.text((generated.width + gap + 8, 8), "real (HRF: row 1; CSDI: rows 2-3; MFIDDR: row 4)", fill="black")
    sheet.paste(generated, (0, title))
    sheet.paste(real, (generated.width + gap, title))
    return sheet


def gallery(size: int, seed: int) -> Image.Image:
    """One forced-positive example per finding and DR grade, healthy first."""
    quiet = {"not_fundus": 0, **dict.fromkeys(DEGRADATIONS, 0)}
    quiet |= {"disc_out_of_field": 0, "macula_out_of_field": 0, "healthy": 0}
    base = dict.fromkeys(FINDING_COLUMNS, 0.0) | {f"dr_grade_{g}": 0.0 for g in range(1, 5)} | quiet
    cases = ["normal", *[f"dr_grade_{g}" for g in range(1, 5)], *FINDING_COLUMNS]
    images, captions = [], []
    for k, case in enumerate(cases):
        prevalence = dict(base) if case == "normal" else base | {case: 1.0}
        sample = FundusGenerator(size, prevalence=prevalence, seed=seed).sample(k)
        images.append(sample.image)
        captions.append(f"{case}: {summarise(sample.record)}")
    return grid(images, 6, size, captions)


def mask_figure(size: int, seed: int) -> Image.Image:
    """Samples (top) and the masks of what was drawn for each positive label (bottom, one colour per label)."""
    severe = {"dr_grade_1": 0.0, "dr_grade_2": 0.0, "dr_grade_3": 1.0, "dr_grade_4": 0.0}
    cases = [
        severe | {"is_dme": 1.0},
        {"is_rvo": 1.0, "is_htr": 1.0},
        {"is_pm": 1.0, "is_gc": 1.0},
        {"is_amd": 1.0, "is_treated": 1.0},
    ]
    palette = [(255, 255, 0), (0, 255, 255), (255, 0, 255), (0, 255, 0), (80, 160, 255), (255, 128, 0)]
    quiet = {"healthy": 0.0, "not_fundus": 0.0, **dict.fromkeys(DEGRADATIONS, 0.0)}
    tops, bottoms, summaries, captions = [], [], [], []
    for k, case in enumerate(cases):
        sample = FundusGenerator(size, prevalence=quiet | case, seed=seed).sample(k)
        overlay = np.asarray(sample.image).astype(np.float32) * 0.35
        names = [key for key, mask in sample.masks.items() if mask.any()]
        for j, name in enumerate(names):
            overlay[sample.masks[name]] = palette[j % len(palette)]
        tops.append(sample.image)
        bottoms.append(Image.fromarray(overlay.astype(np.uint8)))
        summaries.append(summarise(sample.record))
        captions.append("masks: " + ", ".join(names))
    return grid(tops + bottoms, len(cases), size, summaries + captions)


def stats_figure(stats: dict[str, np.ndarray], path: Path) -> None:
    """Box plots of every statistic, one colour per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("per-image channel mean in the field (0-255)", [0, 1, 2], ["R", "G", "B"]),
        ("per-image channel std in the field (0-255)", [3, 4, 5], ["R", "G", "B"]),
        ("green/red ratio, green detail / 10", [6, 7], ["G/R", "detail/10"]),
        ("framing", [8, 11], ["field share", "centre offset"]),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    for ax, (title, columns, labels) in zip(axes, panels, strict=True):
        for k, (name, values) in enumerate(stats.items()):
            data = values[:, columns] / np.array([10.0 if c == 7 else 1.0 for c in columns])
            positions = np.arange(len(columns)) * (len(stats) + 1) + k
            parts = ax.boxplot(data, positions=positions, widths=0.8, patch_artist=True)
            for box in parts["boxes"]:
                box.set_facecolor(SET_COLOURS[name])
                box.set_alpha(0.6)
        ax.set_xticks(np.arange(len(columns)) * (len(stats) + 1) + (len(stats) - 1) / 2, labels)
        ax.set_title(title, fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color=SET_COLOURS[name], alpha=0.6) for name in stats]
    fig.legend(handles, list(stats), loc="upper center", ncol=len(stats))
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=100)


def print_table(stats: dict[str, np.ndarray], columns: tuple[str, ...], offset: int, percent: set[str]) -> None:
    print("| set | images | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for name, values in stats.items():
        means = values[:, offset : offset + len(columns)].mean(0)
        cells = [f"{100 * v:.0f}%" if c in percent else f"{v:.2f}" for c, v in zip(columns, means, strict=True)]
        print(f"| {name} | {len(values)} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=120, help="generated images for the statistics")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--real-dir", type=Path, default=None, help="default: visionclip.paths.real_data_dir()")
    parser.add_argument("--figures", type=Path, default=FIGURES, help="where the figures go")
    args = parser.parse_args()
    args.figures.mkdir(parents=True, exist_ok=True)
    real = load_real(args.real_dir or real_data_dir())
    generator = FundusGenerator(args.size, seed=args.seed, encode_png=False)
    samples = [generator.sample(i) for i in range(args.count)]
    # Compare gradable photographs with gradable photographs (the real sets hold no unreadable frames).
    fundus = [s for s in samples if s.record["is_fundus"] and s.record["is_retinal_region_readable"]]
    stats = {name: np.array([s for s in map(image_stats, images) if s is not None]) for name, images in real.items()}
    stats["generated"] = np.array([s for s in (image_stats(x.image) for x in fundus) if s is not None])
    print(f"statistics inside the field of view ({len(fundus)} gradable generated images, seed {args.seed})")
    colour = len(COLOUR_COLUMNS)
    print_table(stats, COLOUR_COLUMNS, 0, set())
    real_all = np.concatenate([stats[name] for name in REAL_SETS])
    low, high = real_all[:, :colour].min(0), real_all[:, :colour].max(0)
    inside = (stats["generated"][:, :colour] >= low) & (stats["generated"][:, :colour] <= high)
    print("| real min | | " + " | ".join(f"{v:.2f}" for v in low) + " |")
    print("| real max | | " + " | ".join(f"{v:.2f}" for v in high) + " |")
    print("| generated inside the real range | | " + " | ".join(f"{100 * v:.0f}%" for v in inside.mean(0)) + " |")
    print(f"generated images with every colour statistic inside the real range: {100 * inside.all(1).mean():.0f}%")
    print()
    print_table(stats, FRAMING_COLUMNS, colour, {"cut top/bottom", "cut sides"})
    generated_sheet = grid([s.image for s in samples[:16]], 4, 256)
    real_pick = real["hrf"][::12][:4] + real["csdi"][::10][:8] + real["mfiddr"][::24][:4]
    side_by_side(generated_sheet, grid(real_pick, 4, 256)).save(args.figures / "realism_sheet.png", optimize=True)
    stats_figure(stats, args.figures / "realism_colour_stats.png")
    gallery(256, args.seed).save(args.figures / "findings_gallery.png", optimize=True)
    mask_figure(256, args.seed).save(args.figures / "masks_example.png", optimize=True)
    print(f"figures written to {args.figures}")


if __name__ == "__main__":
    main()
