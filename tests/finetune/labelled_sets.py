"""Tiny labelled sets for the fine-tuning tests: generated discs whose colour tells the class, with patients."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HRF_CLASSES = ("healthy", "diabetic_retinopathy", "glaucoma")
COLOURS = {"healthy": (200, 90, 40), "diabetic_retinopathy": (150, 40, 30), "glaucoma": (230, 160, 90)}


def fundus_like(path: Path, colour: tuple[int, int, int], seed: int) -> None:
    """A 48 px orange disc on black (the processor finds its field of view) with a bright spot at a random place."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (48, 48))
    draw = ImageDraw.Draw(image)
    draw.ellipse((2, 2, 45, 45), fill=tuple(int(c + rng.integers(-15, 15)) for c in colour))
    x, y = rng.integers(12, 30, size=2)
    draw.ellipse((x, y, x + 8, y + 8), fill=(250, 230, 180))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def write_set(folder: Path, per_class: int = 6, rows: list[dict] | None = None, patients_per_class: int = 3) -> Path:
    """`folder/labels.csv` (file,label,patient) over `per_class` images of each HRF class; returns the CSV."""
    rows = list(rows or [])
    for c, label in enumerate(HRF_CLASSES):
        for i in range(per_class):
            name = f"images/{label}_{i}.png"
            fundus_like(folder / name, COLOURS[label], seed=100 * c + i)
            rows.append({"file": name, "label": label, "patient": f"p{c}_{i % patients_per_class}"})
    columns = sorted({key for row in rows for key in row}, key=["file", "label", "patient", "fold"].index)
    path = folder / "labels.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path
