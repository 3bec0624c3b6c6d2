from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from visionclip.cli.presets import main
from visionclip.factory import build_model
from visionclip.presets import list_presets, load_preset

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_presets_are_listed_and_build_offline():
    assert {"tiny", "small", "flair-reference"} <= set(list_presets())
    model, processor = build_model("small")
    assert processor.image_processor.size["height"] == load_preset("small").image_size
    assert model.config.text_config.vocab_size == len(processor.tokenizer)
    assert set(model.zero_shot_tasks) >= {"dr_grading", "glaucoma", "amd"}
    assert 1e6 < model.num_parameters() < 30e6


def test_unknown_preset_lists_the_choices(tmp_path):
    with pytest.raises(ValueError, match="choose one of .*tiny"):
        load_preset("huge")
    bad = tmp_path / "bad.yaml"
    bad.write_text("image_size: 8\nprojection_dim: 4\nvision_config: {}\ntext_config: {}\n")
    with pytest.raises(ValueError, match="image_size"):
        load_preset(bad)
    bad.write_text("image_size: 64\nprojection_dim: 4\nvision_config: {}\ntext_config: {}\nsize: 3\n")
    with pytest.raises(ValueError, match="unknown keys"):
        load_preset(bad)


def test_cli_builds_a_loadable_folder(tmp_path, capsys):
    assert main(["build", "tiny", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert main(["list"]) == 0
    assert "flair-reference" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["build", "nope", str(tmp_path / "x")])


def test_python_m_visionclip_presets_still_runs_the_command_line():
    listed = subprocess.run(
        [sys.executable, "-m", "visionclip.presets", "list"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert listed.returncode == 0, listed.stderr
    assert "flair-reference" in listed.stdout


def test_small_pretrained_describes_its_packaged_towers_and_their_normalisation():
    from transformers import AutoConfig

    from visionclip.packaged_towers import (
        LITE_IMAGE_MEAN,
        LITE_IMAGE_STD,
        efficientnet_lite0_config,
        minilm_folder,
    )

    preset = load_preset("small-pretrained")
    assert preset.pretrained_towers == {"vision": "efficientnet-lite0", "text": "all-minilm-l6-v2"}
    assert preset.tokenizer == "all-minilm-l6-v2" and preset.text_pooling == "mean"  # MiniLM is trained mean-pooled
    assert (preset.image_mean, preset.image_std) == (LITE_IMAGE_MEAN, LITE_IMAGE_STD)
    # the random-initialisation architectures are the packaged towers' own
    for config, described in (
        (efficientnet_lite0_config(), preset.vision_config),
        (AutoConfig.from_pretrained(minilm_folder()), preset.text_config),
    ):
        assert {key: getattr(config, key) for key in described} == described
    assert load_preset("small").image_mean is None  # other presets keep ImageNet's normalisation
