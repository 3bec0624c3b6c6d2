from __future__ import annotations

import pytest

from visionclip.training.checkpoint import TRAINER_STATE, complete_checkpoints, resolve_resume


def test_interrupted_writes_never_count_as_checkpoints(tmp_path):
    folder = tmp_path / "checkpoints"
    for name, complete in (
        ("step_00000010", True),
        ("step_00000020", True),
        ("step_00000030.tmp", True),
        ("step_00000040", False),
    ):
        (folder / name).mkdir(parents=True)
        if complete:
            (folder / name / TRAINER_STATE).write_text("{}")
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["step_00000010", "step_00000020"]
    assert resolve_resume(tmp_path, "latest").name == "step_00000020"
    assert resolve_resume(tmp_path / "empty", "latest") is None
    assert resolve_resume(tmp_path, None) is None
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        resolve_resume(tmp_path, str(folder / "step_00000040"))
