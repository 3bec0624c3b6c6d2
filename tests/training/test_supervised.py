"""`train.py --objective supervised`: the image tower alone on the synthetic labels (Image+Fundus-style baseline)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.finetune.labelled_sets import write_set
from visionclip.schema import FINDING_COLUMNS, LABEL_VECTOR_COLUMNS
from visionclip.training.config import load_config
from visionclip.training.supervised import HEAD_OUTPUTS, head_output, head_targets
from visionclip.zeroshot.tasks import finding_tasks

from .test_train import COMMON, run_train, small_trainer

SUPERVISED = {"objective": "supervised", "lock_image": False}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--objective", "ranking"], "objective must be one of ('contrastive', 'supervised'), got 'ranking'"),
        (["--objective", "supervised"], "objective supervised trains the image tower, which lock_image freezes"),
    ],
)
def test_a_bad_objective_is_refused_with_its_reason(argv: list[str], message: str, capsys):
    with pytest.raises(SystemExit):
        load_config(argv)
    assert message in capsys.readouterr().err


def test_head_targets_are_the_findings_and_the_grade_thresholds():
    labels = torch.zeros((2, len(LABEL_VECTOR_COLUMNS)), dtype=torch.long)
    labels[0, LABEL_VECTOR_COLUMNS.index("dr_grade")] = 2
    labels[1, LABEL_VECTOR_COLUMNS.index("is_gc")] = 1
    targets = head_targets(labels)
    on = [{HEAD_OUTPUTS[i] for i in np.flatnonzero(row)} for row in targets.numpy()]
    assert on == [{"dr_grade>=1", "dr_grade>=2"}, {"is_gc"}]
    assert len(HEAD_OUTPUTS) == 4 + len(FINDING_COLUMNS)


def test_every_held_out_question_is_answered_by_its_own_head_output():
    outputs = {task.name: HEAD_OUTPUTS[head_output(task)] for task in finding_tasks()}
    assert outputs["diabetic_retinopathy"] == "dr_grade>=1" and outputs["referable_dr"] == "dr_grade>=2"
    assert sorted(outputs.values())[2:] == sorted(FINDING_COLUMNS)  # the two grade questions, then one per finding


def test_supervised_steps_lower_the_loss_and_train_only_the_image_side(cache_dir: Path, tmp_path: Path):
    trainer = small_trainer(cache_dir, tmp_path, max_steps=8, warmup_steps=1, lr=3e-3, **SUPERVISED)
    model = trainer.model
    text_before = {n: p.detach().clone() for n, p in model.named_parameters() if not n.startswith("vision")}
    image_before = {n: p.detach().clone() for n, p in model.vision_model.named_parameters()}
    trainer.train_mode()
    micro = [next(trainer.micro_batches())]
    losses = [trainer.train_step(micro) for _ in range(8)]
    assert losses[-1] < losses[0] - 0.05, losses
    unchanged = [n for n, p in model.named_parameters() if n in text_before and torch.equal(p, text_before[n])]
    assert sorted(unchanged) == sorted(n for n in text_before if not n.startswith("visual_projection")), unchanged
    assert any(not torch.equal(p, image_before[n]) for n, p in model.vision_model.named_parameters())


def test_a_supervised_run_resumes_and_exports_a_folder_that_embeds_but_refuses_zero_shot(
    cache_dir: Path, tmp_path: Path, capsys
):
    output = tmp_path / "run"
    args = [
        *COMMON,
        "--cache-dir",
        str(cache_dir),
        "--output-dir",
        str(output),
        "--objective",
        "supervised",
        "--lock-image",
        "false",
        "--mixed-precision",
        "no",
        "--save-every",
        "2",
        "--eval-every",
        "0",
    ]
    # the timeouts only make a regression fail instead of hanging
    first = run_train([*args, "--max-steps", "4"], timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run_train([*args, "--max-steps", "6", "--resume", "latest"], timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert re.search(r"resumed from \S+step_00000004 at step 4", resumed.stdout + resumed.stderr)
    assert "held-out supervised-head mean AUROC" in resumed.stdout + resumed.stderr

    from visionclip.factory import load_model
    from visionclip.zeroshot.data import load_eval_dataset
    from visionclip.zeroshot.runner import EvalOptions, evaluate_dataset
    from visionclip.zeroshot.tasks import load_task

    model, processor = load_model(output / "model")
    assert model.config.training_objective == "supervised"
    card = (output / "model" / "README.md").read_text()
    assert "**Text side untrained.**" in card and "pipeline_tag: image-feature-extraction" in card
    labels = write_set(tmp_path / "set", per_class=4)
    columns = {
        "file": "file",
        "label": "label",
        "split": "split",
        "fold": "fold",
        "group": "patient",
        "image": "image",
    }
    dataset = load_eval_dataset(str(labels), load_task("hrf"), "hrf", columns, "test", 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entries, _ = evaluate_dataset(model, processor, "supervised", dataset, EvalOptions(shots=2, bootstrap=10))
    assert [entry["mode"] for entry in entries] == ["few-shot"]
    assert any("no zero-shot on hrf: the model's text side is untrained" in str(w.message) for w in caught)

    from visionclip.cli.eval import main as eval_main

    with pytest.raises(SystemExit):
        eval_main(["--model", str(output / "model"), "--dataset", f"hrf:{labels}", "--modes", "zero-shot"])
    assert "supervised-pretraining baseline whose text side is untrained" in capsys.readouterr().err
