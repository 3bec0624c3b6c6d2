import numpy as np
import pytest

from visionclip.schema import COLUMN_NAMES, FINDING_COLUMNS, derive_summary_flags, validate_record
from visionclip.synthetic import DEFAULT_PREVALENCE, FundusGenerator, resolve_prevalence
from visionclip.synthetic.labels import ADVICE, LabelPlan, build_record, readability

from .conftest import only


def plans(prevalence=None, count=6000, seed=0):
    generator = FundusGenerator(256, prevalence=prevalence, seed=seed)
    return [generator.sample_plan(i) for i in range(count)]


def test_resolve_prevalence_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown prevalence key 'is_cataract'"):
        resolve_prevalence({"is_cataract": 0.1})
    with pytest.raises(ValueError, match="between 0 and 1"):
        resolve_prevalence({"is_gc": 1.5})
    with pytest.raises(ValueError, match="not a number"):
        resolve_prevalence({"is_gc": "lots"})
    with pytest.raises(ValueError, match="add up to more than 1"):
        resolve_prevalence({"dr_grade_1": 0.6, "dr_grade_2": 0.6})
    assert resolve_prevalence({"is_gc": 0.2})["is_gc"] == 0.2


def test_every_finding_learnable_by_default():
    for name in FINDING_COLUMNS:
        assert DEFAULT_PREVALENCE[name] >= 0.045, name
    for grade in range(1, 5):
        assert DEFAULT_PREVALENCE[f"dr_grade_{grade}"] >= 0.045


def test_default_marginals_match_the_configuration():
    sampled = [p for p in plans() if p.is_fundus]
    for name in FINDING_COLUMNS:
        rate = np.mean([p.findings[name] for p in sampled])
        assert abs(rate - DEFAULT_PREVALENCE[name]) < 0.015, (name, rate)
    grades = np.bincount([p.dr_grade for p in sampled], minlength=5) / len(sampled)
    for grade in range(1, 5):
        assert abs(grades[grade] - DEFAULT_PREVALENCE[f"dr_grade_{grade}"]) < 0.015, (grade, grades)
    normal = np.mean([p.dr_grade == 0 and not any(p.findings.values()) for p in sampled])
    mild_or_normal = np.mean([p.dr_grade <= 1 and not any(p.findings.values()) for p in sampled])
    assert normal > 0.4 and mild_or_normal > 0.5


def test_co_occurrence_rules_hold():
    for plan in plans(count=4000, seed=1) + plans(only(is_treated=1.0, is_pm=0.5, is_dme=0.3), count=500):
        if plan.findings["is_pm"]:
            assert plan.findings["is_tessellated"]
        if plan.findings["is_dme"]:
            assert plan.dr_grade >= 2
        if plan.findings["is_treated"]:
            assert plan.dr_grade >= 3 or plan.findings["is_dme"] or plan.findings["is_rvo"]
        if not plan.disc_in_field:
            assert not (plan.findings["is_gc"] or plan.findings["is_aon"] or plan.findings["is_pm"])
        if not plan.macula_in_field:
            assert not any(plan.findings[n] for n in ("is_amd", "is_crp", "is_dme", "is_em", "is_mh"))


def test_forced_prevalence_is_honoured():
    for name in FINDING_COLUMNS:
        assert all(p.findings[name] for p in plans(only(**{name: 1.0}), count=100) if p.is_fundus), name


def test_readability_follows_the_degradation():
    base = dict(is_fundus=True, eye="left")
    assert readability(LabelPlan(**base)) == dict.fromkeys(readability(LabelPlan(**base)), 1)
    blur = readability(LabelPlan(**base, degradation="heavy_blur"))
    assert (blur["is_retinal_region_readable"], blur["is_macular_readable"], blur["is_optic_disc_readable"]) == (
        0,
        0,
        1,
    )
    over = readability(LabelPlan(**base, degradation="overexposed"))
    assert (over["is_retinal_region_readable"], over["is_macular_readable"], over["is_optic_disc_readable"]) == (
        0,
        1,
        0,
    )
    assert readability(LabelPlan(**base, disc_in_field=False))["is_optic_disc_readable"] == 0
    assert readability(LabelPlan(**base, macula_in_field=False))["is_macular_readable"] == 0
    assert set(readability(LabelPlan(is_fundus=False, eye="right")).values()) == {0}


def test_build_record_is_complete_and_consistent():
    findings = dict.fromkeys(FINDING_COLUMNS, 0) | {"is_gc": 1, "is_dme": 1}
    plan = LabelPlan(is_fundus=True, eye="right", findings=findings, dr_grade=2)
    record = build_record(plan, 2, 9, "7.png", "0" * 32)
    assert tuple(record) == COLUMN_NAMES
    assert validate_record(record) == []
    for key, value in derive_summary_flags(record).items():
        assert record[key] == value
    assert ADVICE["is_gc"] in record["diagnosticAdvice"]
    non_fundus = build_record(LabelPlan(is_fundus=False, eye="left"), 0, 9, "8.png")
    assert non_fundus["retinal_region_quality_score"] == 0 and non_fundus["is_abnormal"] == 0
    assert validate_record(non_fundus) == []
