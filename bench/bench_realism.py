"""Realism check: generated fundus images beside real photographs, and their colour statistics.

Writes ``docs/figures/realism_sheet.png`` (generated | real), ``docs/figures/realism_colour_stats.png`` and
``docs/figures/findings_gallery.png`` (one example per finding) and ``docs/figures/masks_example.png`` (what each
positive label's mask covers), and prints the colour table (mean and standard
deviation of each RGB channel inside the field of view; the field is where max(R, G, B) > 25 in both sets).

The real photographs (/work/shared/data/fundus-real: HRF and CSDI, CC BY 4.0) are used only for this visual and
statistical comparison, never to tune a model.

    python bench/bench_realism.py [--count 120] [--real-dir /work/shared/data/fundus-real]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from visionclip.schema import FINDING_COLUMNS
from visionclip.synthetic import FundusGenerator
from visionclip.synthetic.writer import summarise

ROOT = Path(__file__).resolve().parents[1]

FIGURES = ROOT / "docs" / "figures"
CHANNELS = ("R", "G", "B")


def field_stats(image: Image.Image) -> np.ndarray | None:
    """[mean R, G, B, std R, G, B] over field-of-view pixels (max channel > 25), None if no field."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32).reshape(-1, 3)
    inside = pixels[pixels.max(1) > 25]
    if len(inside) < 100:
        return None
    return np.concatenate([inside.mean(0), inside.std(0)])


def load_real(real_dir: Path) -> dict[str, list[Image.Image]]:
    sets = {}
    for name in ("hrf", "csdi"):
        files = sorted((real_dir / name / "images").glob("*.jpg"))
        sets[name] = [Image.open(f).convert("RGB") for f in files]
    return sets


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
    draw.text((generated.width + gap + 8, 8), "real (HRF: first 2 rows; CSDI: last 2 rows)", fill="black")
    sheet.paste(generated, (0, title))
    sheet.paste(real, (generated.width + gap, title))
    return sheet


def gallery(size: int, seed: int) -> Image.Image:
    """One forced-positive example per finding and DR grade, healthy first."""
    quiet = {"not_fundus": 0, "heavy_blur": 0, "underexposed": 0, "overexposed": 0, "artifact": 0}
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
    quiet = {"healthy": 0.0, "not_fundus": 0.0, "heavy_blur": 0.0, "underexposed": 0.0, "overexposed": 0.0}
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


def colour_figure(stats: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {"hrf": "tab:red", "csdi": "tab:olive", "generated": "tab:blue"}
    for offset, (title, ax) in enumerate(zip(("mean", "standard deviation"), axes, strict=True)):
        for k, (name, values) in enumerate(stats.items()):
            positions = np.arange(3) * 4 + k
            parts = ax.boxplot(
                values[:, offset * 3 : offset * 3 + 3], positions=positions, widths=0.8, patch_artist=True
            )
            for box in parts["boxes"]:
                box.set_facecolor(colours[name])
                box.set_alpha(0.6)
        ax.set_xticks(np.arange(3) * 4 + 1, CHANNELS)
        ax.set_title(f"per-image {title} inside the field (0-255)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.6) for c in colours.values()]
    fig.legend(handles, list(colours), loc="upper center", ncol=3)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=120, help="generated images for the statistics")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--real-dir", type=Path, default=Path("/work/shared/data/fundus-real"))
    args = parser.parse_args()
    FIGURES.mkdir(parents=True, exist_ok=True)
    real = load_real(args.real_dir)
    generator = FundusGenerator(args.size, seed=args.seed, encode_png=False)
    samples = [generator.sample(i) for i in range(args.count)]
    # Compare gradable photographs with gradable photographs (the real sets hold no unreadable frames).
    fundus = [s for s in samples if s.record["is_fundus"] and s.record["is_retinal_region_readable"]]
    stats = {name: np.array([s for s in map(field_stats, images) if s is not None]) for name, images in real.items()}
    stats["generated"] = np.array([s for s in (field_stats(x.image) for x in fundus) if s is not None])
    real_all = np.concatenate([stats["hrf"], stats["csdi"]])
    low, high = real_all.min(0), real_all.max(0)
    print(f"colour statistics inside the field of view ({len(fundus)} gradable generated images, seed {args.seed})")
    print("| set | images | mean R | mean G | mean B | std R | std G | std B |")
    print("|---|---|---|---|---|---|---|---|")
    for name, values in stats.items():
        mean = values.mean(0)
        print(f"| {name} | {len(values)} | " + " | ".join(f"{v:.1f}" for v in mean) + " |")
    print("| real min | | " + " | ".join(f"{v:.1f}" for v in low) + " |")
    print("| real max | | " + " | ".join(f"{v:.1f}" for v in high) + " |")
    within = ((stats["generated"] >= low) & (stats["generated"] <= high)).mean(0)
    print("| generated within real range | | " + " | ".join(f"{100 * v:.0f}%" for v in within) + " |")
    all_within = ((stats["generated"] >= low) & (stats["generated"] <= high)).all(1).mean()
    print(f"generated images with all six statistics inside the real range: {100 * all_within:.0f}%")
    generated_sheet = grid([s.image for s in samples[:16]], 4, 256)
    real_pick = real["hrf"][::6][:8] + real["csdi"][::10][:8]
    side_by_side(generated_sheet, grid(real_pick, 4, 256)).save(FIGURES / "realism_sheet.png", optimize=True)
    colour_figure(stats, FIGURES / "realism_colour_stats.png")
    gallery(256, args.seed).save(FIGURES / "findings_gallery.png", optimize=True)
    mask_figure(256, args.seed).save(FIGURES / "masks_example.png", optimize=True)
    print(f"figures written to {FIGURES}")


if __name__ == "__main__":
    main()
