"""Shared fixtures for the synthetic generator tests (small images keep the folder fast)."""

from __future__ import annotations

import pytest

from visionclip.schema import FINDING_COLUMNS

QUIET = {
    "not_fundus": 0.0,
    "heavy_blur": 0.0,
    "underexposed": 0.0,
    "overexposed": 0.0,
    "artifact": 0.0,
    "media_opacity": 0.0,
    "disc_out_of_field": 0.0,
    "macula_out_of_field": 0.0,
}


def only(**forced: float) -> dict[str, float]:
    """Prevalences with every finding and DR grade off except ``forced`` (no degradations, no healthy gate)."""
    prevalence = dict.fromkeys(FINDING_COLUMNS, 0.0)
    prevalence.update({f"dr_grade_{g}": 0.0 for g in range(1, 5)}, healthy=0.0, **QUIET)
    prevalence.update(forced)
    return prevalence


@pytest.fixture(scope="session")
def small_size() -> int:
    return 128
