"""The label-efficiency study's outputs: a Markdown table, CSV and JSON of every point, and one PNG of the learning
curves with their 95% interval bands; each file written whole or not at all."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..shards import atomic_write_bytes

CSV_COLUMNS = ("set", "starting_point", "shots", "mean", "ci_low", "ci_high", "draws", "discarded", "skipped")


def cell(row: dict[str, Any]) -> str:
    if row["mean"] is None:
        return "skipped"
    return f"{row['mean']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def markdown_table(rows: list[dict[str, Any]], shots: list[int | str]) -> str:
    """One line per set and starting point, one column per number of shots; skipped points listed below."""
    header = "| set | starting point | " + " | ".join(f"k = {k}" for k in shots) + " |"
    lines = [header, "|" + "---|" * (2 + len(shots))]
    keys = list(dict.fromkeys((row["set"], row["starting_point"]) for row in rows))
    by_key = {(row["set"], row["starting_point"], row["shots"]): row for row in rows}
    for data, point in keys:
        cells = [cell(by_key[(data, point, k)]) if (data, point, k) in by_key else "–" for k in shots]
        lines.append(f"| {data} | {point} | " + " | ".join(cells) + " |")
    reasons = dict.fromkeys(f"{row['set']}, k = {row['shots']}: {row['skipped']}" for row in rows if row["skipped"])
    if reasons:
        lines += ["", "Skipped:", "", *(f"- {reason}" for reason in reasons)]
    return "\n".join(lines)


def csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: row[key] for key in CSV_COLUMNS} for row in rows)
    return buffer.getvalue()


def plot_curves(rows: list[dict[str, Any]], shots: list[int | str], path: Path) -> None:
    """One panel per set: mean macro AUROC against shots per class for each starting point, with its 95% band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(row["set"] for row in rows))
    points = list(dict.fromkeys(row["starting_point"] for row in rows))
    figure, axes = plt.subplots(1, len(sets), figsize=(4.6 * len(sets), 4.2), squeeze=False, sharey=True)
    positions = np.arange(len(shots))
    for axis, data in zip(axes[0], sets, strict=True):
        for index, point in enumerate(points):
            found = {row["shots"]: row for row in rows if row["set"] == data and row["starting_point"] == point}
            values = [found.get(k) or {"mean": None} for k in shots]
            mean = np.array([np.nan if v["mean"] is None else v["mean"] for v in values])
            low = np.array([np.nan if v["mean"] is None else v["ci_low"] for v in values])
            high = np.array([np.nan if v["mean"] is None else v["ci_high"] for v in values])
            colour = f"C{index}"
            axis.plot(positions, mean, marker="o", color=colour, label=point)
            axis.fill_between(positions, low, high, color=colour, alpha=0.15, linewidth=0)
        axis.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        axis.set_xticks(positions, [str(k) for k in shots])
        axis.set_xlabel("labelled images per class (k)")
        axis.set_title(data)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("macro AUROC (linear probe)")
    axes[0][0].legend(loc="lower right", fontsize=8)
    figure.suptitle("Label efficiency: mean over random draws, band = 95% interval across draws", fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def write_outputs(
    output: Path, rows: list[dict[str, Any]], shots: list[int | str], protocol: dict[str, Any], unreadable: dict
) -> list[Path]:
    """`results.md`, `results.csv`, `results.json` and `learning_curves.png` in `output`; returns their paths."""
    table = markdown_table(rows, shots)
    files = [output / name for name in ("results.md", "results.csv", "results.json", "learning_curves.png")]
    atomic_write_bytes(files[0], (table + "\n").encode())
    atomic_write_bytes(files[1], csv_text(rows).encode())
    document = {"protocol": protocol, "rows": rows, "unreadable": unreadable}
    atomic_write_bytes(files[2], json.dumps(document, indent=2).encode())
    plot_curves(rows, shots, files[3])
    return files
