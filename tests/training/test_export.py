"""The exported model folder is swapped in whole or not at all, and carries the Inference Endpoints handler."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionclip.hub import ENDPOINT_HANDLER_FILE
from visionclip.resources import ENDPOINT_HANDLER, data_path
from visionclip.training.export import export_model


def test_the_model_folder_carries_the_endpoint_handler(trained_copy: Path):
    written = trained_copy / "model" / ENDPOINT_HANDLER_FILE
    assert written.read_bytes() == data_path(ENDPOINT_HANDLER).read_bytes()


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
