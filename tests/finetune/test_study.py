"""The label-efficiency study: group-disjoint k-shot draws, shots a class cannot serve, a CI for every number, and
the command's resumable, refusing-when-stale outputs."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.finetune.labelled_sets import write_set
from visionclip.cli.label_efficiency import main
from visionclip.finetune.study import (
    ALL,
    ShotsError,
    check_shots,
    cross_validation_folds,
    k_shot_split,
    learning_curve,
)
from visionclip.finetune.study_report import markdown_table

CELL = re.compile(r"^0\.\d{3} \[0\.\d{3}, [01]\.\d{3}\]$|^1\.000 \[[01]\.\d{3}, 1\.000\]$|^skipped$")


def patients(seed: int, count: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Labels of 3 classes and a patient per image: 2 to 6 images per patient, mixed classes within a patient."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(count), rng.integers(2, 7, size=count))
    return rng.integers(0, 3, size=len(groups)), groups.astype(str)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("shots", [1, 4, 16])
def test_a_k_shot_draw_never_puts_a_patient_on_both_sides(seed: int, shots: int):
    labels, groups = patients(seed)
    train, test = k_shot_split(labels, groups, shots, np.random.default_rng(seed))
    assert not set(groups[train]) & set(groups[test])
    assert np.bincount(labels[train], minlength=3).tolist() == [shots] * 3
    assert len(test) > 0 and not set(train) & set(test)


def test_cross_validation_folds_keep_each_patient_in_one_fold():
    labels, groups = patients(0)
    folds = cross_validation_folds(labels, groups, 5, seed=3)
    assert all(len(set(folds[groups == g])) == 1 for g in np.unique(groups))
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]


def test_more_shots_than_a_class_holds_is_skipped_with_the_class_named():
    labels = np.array([0] * 20 + [1] * 20 + [2] * 4)
    with pytest.raises(ShotsError, match=r"too few: glaucoma \(4\)"):
        check_shots(labels, 4, ["healthy", "diabetic_retinopathy", "glaucoma"])
    x = np.random.default_rng(0).normal(size=(len(labels), 8)) + labels[:, None]
    curves = learning_curve(x, labels, None, ["healthy", "diabetic_retinopathy", "glaucoma"], [1, 4, ALL], draws=4)
    assert [c.shots for c in curves] == [1, 4, ALL]
    assert curves[1].skipped and "glaucoma (4)" in curves[1].skipped and curves[1].summary()["mean"] is None
    assert len(curves[0].aurocs) == 4 and len(curves[2].aurocs) == 4


def test_every_number_of_the_table_has_its_95_percent_interval():
    labels, groups = patients(1)
    x = np.random.default_rng(1).normal(size=(len(labels), 8)) + 0.7 * labels[:, None]
    curves = learning_curve(x, labels, groups, ["a", "b", "c"], [1, 4, 1000, ALL], draws=6)
    rows = [{"set": "s", "starting_point": "p", **curve.summary()} for curve in curves]
    for row in rows:
        assert (row["mean"] is None) == (row["ci_low"] is None) == (row["ci_high"] is None) == bool(row["skipped"])
        if row["mean"] is not None:
            assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    cells = markdown_table(rows, [1, 4, 1000, ALL]).splitlines()[2].split(" | ")[2:]
    assert [c.strip(" |") for c in cells][:2] and all(CELL.match(c.strip(" |")) for c in cells), cells
    assert "skipped" in cells[2]


def test_the_command_writes_every_output_resumes_and_refuses_stale_embeddings(tmp_path: Path, capsys):
    labels = write_set(tmp_path / "set", per_class=6)
    output = tmp_path / "study"
    args = ["--model", "tiny", "--towers", "tiny", "--starting-points", "towers", "random"]
    args += [
        "--dataset",
        f"hrf:{labels}",
        "--draws",
        "3",
        "--shots",
        "1",
        "4",
        "8",
        "all",
        "--output-dir",
        str(output),
    ]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert first.count("embedding hrf") == 2
    rows = list(csv.DictReader((output / "results.csv").open()))
    assert len(rows) == 2 * 4 and all(bool(r["mean"]) == bool(r["ci_low"]) == bool(r["ci_high"]) for r in rows)
    assert {r["shots"] for r in rows if r["skipped"]} == {"8"}
    assert json.loads((output / "results.json").read_text())["protocol"]["draws"] == 3
    assert (output / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"

    assert main(args) == 0  # the kept embeddings are reused
    assert "embedding hrf" not in capsys.readouterr().out
    write_set(tmp_path / "set", per_class=5)  # the same set, since changed
    with pytest.raises(SystemExit):
        main(args)
    assert "the model or the set changed since; delete that file" in capsys.readouterr().err
