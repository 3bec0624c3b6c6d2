from __future__ import annotations

import pytest

from visionclip.training.config import TrainConfig, load_config


def test_defaults_are_valid_and_flags_override_yaml(tmp_path):
    TrainConfig().validate()
    options = tmp_path / "run.yaml"
    options.write_text("preset: tiny\nlr: 0.002\nfilters: {is_fundus: [1]}\n")
    config = load_config(["--config", str(options), "--lr", "0.003", "--augment", "false", "--vision-tower", "none"])
    assert (config.preset, config.lr, config.augment, config.vision_tower) == ("tiny", 0.003, False, None)
    assert config.filters == {"is_fundus": [1]}
    assert load_config(["--report-to", "none"]).report_to == "none"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--batch-size", "0"], "batch_size must be positive"),
        (["--loss", "infonce"], "loss must be one of"),
        (["--lr", "1e-3", "--min-lr", "1e-2"], "min_lr"),
        (["--warmup-steps", "500", "--max-steps", "100"], "warmup_steps"),
        (["--augment", "maybe"], "expected true or false"),
        (["--filters", "[1, 2]"], "expected a JSON object"),
        (["--mixed-precision", "fp8"], "mixed_precision"),
        (["--synthetic-image-format", "webp"], "synthetic_image_format"),
        (["--label-similarity", "cosine"], "label_similarity"),
        (["--findings-per-caption", "-1"], "findings_per_caption"),
    ],
)
def test_bad_options_are_named(argv, message, capsys):
    with pytest.raises(SystemExit):
        load_config(argv)
    assert message in capsys.readouterr().err


def test_bad_yaml_is_named(tmp_path, capsys):
    options = tmp_path / "run.yaml"
    options.write_text("learning_rate: 0.1\n")
    with pytest.raises(SystemExit):
        load_config(["--config", str(options)])
    assert "unknown options ['learning_rate']" in capsys.readouterr().err
    options.write_text("lr: fast\n")
    with pytest.raises(SystemExit):
        load_config(["--config", str(options)])
    assert "lr should be float" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        load_config(["--config", str(tmp_path / "missing.yaml")])


def test_micro_batch_divides_the_global_batch():
    config = TrainConfig(batch_size=64, accum_steps=2)
    assert config.micro_batch_size(world_size=4) == 8
    with pytest.raises(ValueError, match="does not divide"):
        config.micro_batch_size(world_size=3)


def test_shipped_training_configs_load():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "configs" / "train"
    files = sorted(folder.glob("*.yaml"))
    assert files
    for file in files:
        config = load_config(["--config", str(file)])
        assert config.batch_size % 8 == 0, file.name
