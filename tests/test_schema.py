from __future__ import annotations

from visionclip.schema import (
    COLUMN_NAMES,
    FINDING_COLUMNS,
    datasets_features,
    derive_summary_flags,
    validate_record,
)


def normal_record(**overrides):
    record = {name: 0 for name in COLUMN_NAMES}
    record.update(
        file_name="1.png",
        file_md5="0" * 32,
        eyes_side="left",
        retinal_region_quality_score=9,
        diagnosticAdvice="",
        is_fundus=1,
        is_macular_readable=1,
        is_optic_disc_readable=1,
        is_retinal_region_readable=1,
    )
    record.update(overrides)
    return record


def test_valid_record_passes_and_bad_values_are_named():
    assert validate_record(normal_record()) == []
    problems = validate_record(normal_record(dr_grade=7, eyes_side="both", is_gc="yes"))
    assert any("dr_grade: 7" in p for p in problems)
    assert any("eyes_side" in p for p in problems)
    assert any("is_gc" in p for p in problems)
    record = normal_record()
    del record["is_amd"]
    assert validate_record(record) == ["is_amd: column missing"]


def test_summary_flags_follow_the_findings():
    assert derive_summary_flags(normal_record()) == {"is_dm": 0, "is_md": 0, "has_lesion": 0, "is_abnormal": 0}
    assert derive_summary_flags(normal_record(dr_grade=1))["is_dm"] == 1
    assert derive_summary_flags(normal_record(is_gc=1)) == {"is_dm": 0, "is_md": 0, "has_lesion": 0, "is_abnormal": 1}
    assert derive_summary_flags(normal_record(is_amd=1))["is_md"] == 1
    for column in FINDING_COLUMNS:
        assert derive_summary_flags(normal_record(**{column: 1}))["is_abnormal"] == 1


def test_features_cover_every_column():
    features = datasets_features()
    assert list(features)[0] == "image" and set(COLUMN_NAMES) <= set(features)
