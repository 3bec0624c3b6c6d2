"""`load_explainable`: a saved folder whose remote code lacks an explain option is loaded with this checkout's code."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from modeling_visionclip import VisionCLIPModel
from visionclip.explain import can_explain, load_explainable, loading


def test_a_folder_whose_explain_lacks_an_option_is_loaded_with_this_checkouts_code(
    tiny_folder, tiny_model_and_processor, monkeypatch, capsys
):
    model, processor = tiny_model_and_processor
    older = SimpleNamespace(explain=lambda images, processor, text=None, method="similarity": None)
    monkeypatch.setattr(loading, "load_model", lambda source: (older, processor))
    assert can_explain(older, processor) and not can_explain(older, processor, ["upscale"])

    loaded, loaded_processor = load_explainable(tiny_folder, options=["upscale"])

    assert type(loaded) is VisionCLIPModel and can_explain(loaded, loaded_processor, ["upscale"])
    assert "predates explain(upscale)" in capsys.readouterr().out
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())
    assert load_explainable(tiny_folder)[0] is older  # without the option, the saved code is kept
