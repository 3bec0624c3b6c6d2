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
    measured = [row for row in rows if row["mean"] is not None]
    draws = sorted({row["draws"] for row in measured})
    lines += ["", f"Draws per number: {', '.join(map(str, draws))}."] if draws else []
    discarded = [row for row in measured if row["discarded"]]
    lines += [
        f"- {row['set']}, {row['starting_point']}, k = {row['shots']}: {row['discarded']} draws discarded (a class "
        "left without test or training images)"
        for row in discarded
    ]
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
        measured = set()
        for index, point in enumerate(points):
            found = {row["shots"]: row for row in rows if row["set"] == data and row["starting_point"] == point}
            kept = [i for i, k in enumerate(shots) if (found.get(k) or {}).get("mean") is not None]
            measured.update(kept)
            mean, low, high = (np.array([found[shots[i]][key] for i in kept]) for key in ("mean", "ci_low", "ci_high"))
            x = positions[kept] + 0.06 * (index - (len(points) - 1) / 2)  # side by side where the curves coincide
            colour = f"C{index}"
            axis.plot(x, mean, marker="o", color=colour, label=point)
            axis.fill_between(x, low, high, color=colour, alpha=0.12, linewidth=0)
            axis.errorbar(x, mean, yerr=[mean - low, high - mean], fmt="none", ecolor=colour, capsize=3, linewidth=1)
        axis.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        names = [str(k) if i in measured else f"{k}\n(skipped)" for i, k in enumerate(shots)]
        axis.set_xticks(positions, names)
        axis.set_xlabel("labelled images per class (k)")
        axis.set_title(data)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("macro AUROC (linear probe)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(points), fontsize=8, frameon=False)
    figure.suptitle("Label efficiency: mean over random draws, bars and band = 95% interval across draws", fontsize=10)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
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
