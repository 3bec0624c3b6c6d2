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
        (["--lr", "inf"], "lr must be a finite number, got inf"),
        (["--lr", "nan"], "lr must be a finite number, got nan"),
        (["--adam-eps=-inf"], "adam_eps must be a finite number, got -inf"),
        (["--grad-clip", "nan"], "grad_clip must be a finite number"),
        (["--tower-lr", "nan"], "tower_lr must be a finite number, got nan"),
        (["--tower-lr", "0"], "tower_lr must be > 0 (or unset), got 0.0"),
        (["--cpu-threads", "-1"], "cpu_threads must not be negative, got -1"),
        (["--resume", "latest", "--overwrite", "true"], "resume and overwrite exclude each other"),
        (["--output-dir", ""], "output_dir must name a folder"),
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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr: [0.1,\n", "is not readable YAML"),
        ("output_dir: null\n", "output_dir should be str, got None"),
        ("batch_size: true\n", "batch_size should be int, got True"),
        ("lr: false\n", "lr should be float, got False"),
        ("lr: .inf\n", "lr must be a finite number, got inf"),
        ("augment: 1\n", "augment should be bool, got 1"),
        ("vision_tower: 3\n", "vision_tower should be str or null, got 3"),
    ],
)
def test_bad_yaml_values_are_named(text, message, tmp_path, capsys):
    options = tmp_path / "run.yaml"
    options.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        load_config(["--config", str(options)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_nulls_stay_allowed_for_optional_options(tmp_path):
    options = tmp_path / "run.yaml"
    options.write_text("vision_tower: null\nfilters: null\nlr: 1\n")
    config = load_config(["--config", str(options)])
    assert (config.vision_tower, config.filters, config.lr) == (None, None, 1)


def test_resume_allows_only_the_length_and_operational_options_to_change():
    saved = TrainConfig(preset="tiny", max_steps=10, seed=1).to_dict()
    longer = TrainConfig(preset="tiny", max_steps=20, seed=1, save_every=5, report_to="none", output_dir="moved")
    assert longer.resume_differences(saved) == []
    elsewhere = TrainConfig(preset="tiny", max_steps=10, seed=1, mixed_precision="no")  # auto picked fp32 there
    assert elsewhere.resume_differences({**saved, "mixed_precision": "bf16"}) == []
    other = TrainConfig(preset="small", max_steps=20, seed=2, lr=0.002)
    assert other.resume_differences(saved) == [
        "preset ('tiny' in the checkpoint, 'small' now)",
        "lr (0.001 in the checkpoint, 0.002 now)",
        "seed (1 in the checkpoint, 2 now)",
    ]
    older = {key: value for key, value in saved.items() if key != "findings_per_caption"}
    assert TrainConfig(preset="tiny", seed=1, findings_per_caption=1).resume_differences(older) == [
        "findings_per_caption (0 in the checkpoint, 1 now)"
    ]


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


def test_every_option_has_its_help_in_field_metadata_and_in_the_help_output(capsys):
    import dataclasses

    fields = dataclasses.fields(TrainConfig)
    without_help = [item.name for item in fields if not item.metadata.get("help")]
    assert not without_help, f"options without help: {without_help}"
    with pytest.raises(SystemExit) as exit_info:
        load_config(["--help"])
    assert exit_info.value.code == 0
    listing = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    for item in fields:
        assert f"--{item.name.replace('_', '-')}" in listing, item.name
        assert " ".join(item.metadata["help"].split()) in listing, item.name
