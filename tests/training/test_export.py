"""The exported model folder is swapped in whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionclip.training.export import export_model


def test_a_failed_export_leaves_the_previous_model_and_no_partial_folder(
    trained_copy: Path, make_trainer, monkeypatch
):
    trainer = make_trainer("--resume", "latest")
    trainer.resume()
    previous = (trained_copy / "model" / "model.safetensors").read_bytes()

    def unreadable_split() -> list[str]:
        raise OSError("the held-out split went away")

    monkeypatch.setattr(trainer, "held_out_files", unreadable_split)
    with pytest.raises(OSError, match="went away"):
        export_model(trainer, {}, "summary")
    assert not (trained_copy / "model.tmp").exists()
    assert (trained_copy / "model" / "model.safetensors").read_bytes() == previous
