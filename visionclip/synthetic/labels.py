"""Label sampling: prevalences, co-occurrence rules, readability, and the metadata record.

Sampling order for one image (all from the image's own label stream):

1. ``not_fundus``: a small fraction of frames are not fundus photographs (every label 0, quality 0).
2. ``healthy``: a share of fundus images is drawn fully normal up front; the per-finding prevalences are raised
   inside the remainder so that each finding's overall rate stays as configured (when possible).
3. Findings independently at their (raised) prevalence, then the co-occurrence rules:
   pathologic myopia implies a tessellated fundus (tessellation's rate is kept by lowering it among non-myopes);
   DME implies DR grade >= 2 (its exudates are lesions beyond microaneurysms); laser scars need an indication
   (DR grade >= 3, DME or RVO; one is added when missing).
4. DR grade from its distribution (``dr_grade_1`` .. ``dr_grade_4``; grade 0 takes the rest).
5. At most one heavy degradation (blur, under-/over-exposure, artefacts, dense media opacity), and framing with the disc or the macula
   out of the field, only when no finding needs that landmark.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..schema import COLUMN_NAMES, FINDING_COLUMNS, READABILITY_COLUMNS, derive_summary_flags
from .camera import DEGRADATIONS

DEFAULT_PREVALENCE: dict[str, float] = {
    "dr_grade_1": 0.13,
    "dr_grade_2": 0.11,
    "dr_grade_3": 0.06,
    "dr_grade_4": 0.06,
    "is_amd": 0.06,
    "is_aon": 0.05,
    "is_crp": 0.05,
    "is_dme": 0.07,
    "is_em": 0.05,
    "is_gc": 0.07,
    "is_mh": 0.05,
    "is_htr": 0.06,
    "is_pm": 0.05,
    "is_rvo": 0.05,
    "is_tessellated": 0.10,
    "is_treated": 0.05,
    "not_fundus": 0.02,
    "heavy_blur": 0.03,
    "underexposed": 0.025,
    "overexposed": 0.02,
    "artifact": 0.03,
    "media_opacity": 0.02,
    "disc_out_of_field": 0.025,
    "macula_out_of_field": 0.025,
    "healthy": 0.40,
    "right_eye": 0.5,
}
PREVALENCE_HELP: dict[str, str] = {
    "dr_grade_1": "ICDR grade 1-4 shares (grade 0 gets the rest)",
    "not_fundus": "frames that are not fundus photographs",
    "heavy_blur": "heavy degradations (retinal region unreadable): heavy_blur, underexposed, overexposed, artifact, "
    "media_opacity (dense cataract-like haze)",
    "disc_out_of_field": "framing with the disc (or macula_out_of_field: the fovea) outside the field",
    "healthy": "share of fundus images drawn fully normal before findings are sampled",
    "right_eye": "share of right eyes",
}
DR_GRADE_KEYS: tuple[str, ...] = ("dr_grade_1", "dr_grade_2", "dr_grade_3", "dr_grade_4")
DISC_FINDINGS: frozenset[str] = frozenset({"is_gc", "is_aon", "is_pm"})
MACULA_FINDINGS: frozenset[str] = frozenset({"is_amd", "is_crp", "is_dme", "is_em", "is_mh"})

ADVICE: dict[str, str] = {
    "is_amd": "年龄相关性黄斑变性",
    "is_aon": "视神经萎缩",
    "is_crp": "中心性浆液性脉络膜视网膜病变",
    "is_dme": "糖尿病性黄斑水肿",
    "is_em": "黄斑前膜",
    "is_gc": "疑似青光眼",
    "is_mh": "黄斑裂孔",
    "is_htr": "高血压性视网膜病变",
    "is_pm": "病理性近视",
    "is_rvo": "视网膜静脉阻塞",
    "is_tessellated": "豹纹状眼底",
    "is_treated": "视网膜激光光凝术后",
}
DR_ADVICE: dict[int, str] = {
    1: "轻度非增殖期糖尿病视网膜病变",
    2: "中度非增殖期糖尿病视网膜病变",
    3: "重度非增殖期糖尿病视网膜病变",
    4: "增殖期糖尿病视网膜病变",
}


def resolve_prevalence(overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """Defaults updated with ``overrides``; raises ValueError for unknown keys or impossible values."""
    prevalence = dict(DEFAULT_PREVALENCE)
    for key, value in (overrides or {}).items():
        if key not in prevalence:
            raise ValueError(f"unknown prevalence key {key!r}; valid keys: {', '.join(sorted(prevalence))}")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"prevalence {key}={value!r} is not a number") from None
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"prevalence {key}={value} must be between 0 and 1")
        prevalence[key] = value
    if sum(prevalence[k] for k in DR_GRADE_KEYS) > 1.0 + 1e-9:
        raise ValueError("dr_grade_1..dr_grade_4 add up to more than 1")
    if sum(prevalence[k] for k in DEGRADATIONS) > 1.0 + 1e-9:
        raise ValueError(f"{', '.join(DEGRADATIONS)} add up to more than 1")
    return prevalence


@dataclass(frozen=True)
class LabelPlan:
    """Everything decided before drawing: the eye, the findings, the DR grade and the image quality."""

    is_fundus: bool
    eye: str
    findings: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINDING_COLUMNS, 0))
    dr_grade: int = 0
    degradation: str | None = None
    disc_in_field: bool = True
    macula_in_field: bool = True


def _grade(rng: np.random.Generator, shares: np.ndarray, minimum: int = 0) -> int:
    weights = shares.copy()
    weights[:minimum] = 0.0
    if weights.sum() <= 0:
        return minimum
    return int(rng.choice(5, p=weights / weights.sum()))


def _dependent_labels(
    rng: np.random.Generator, shares: np.ndarray, dme: float, treated: float, rvo: int, rvo_rate: float
) -> tuple[int, int, int]:
    """DR grade, DME and laser treatment with their rules (DME needs grade >= 2; treatment needs grade >= 3,
    DME or RVO), keeping each marginal rate exact whenever the rates allow it.

    DME is drawn among grade >= 2 images at rate ``dme / P(grade >= 2)``; only when that exceeds 1 is DME drawn
    first and the grade raised. Treatment likewise, among eligible images.
    """
    severe_share = float(shares[2:].sum())
    if dme <= severe_share:
        grade = int(rng.choice(5, p=shares))
        has_dme = int(grade >= 2 and rng.random() * severe_share < dme)
    else:
        has_dme = int(rng.random() < dme)
        grade = _grade(rng, shares, minimum=2 if has_dme else 0)
    if dme <= severe_share:
        p_dme_given_moderate = dme / severe_share if severe_share > 0 else 0.0
        not_eligible = float(shares[:2].sum()) + float(shares[2]) * (1 - p_dme_given_moderate)
    else:
        not_eligible = (1 - dme) * float(shares[:3].sum())
    not_eligible *= 1 - rvo_rate
    eligible_share = 1.0 - not_eligible
    eligible = grade >= 3 or has_dme or rvo
    if treated <= eligible_share:
        has_treatment = int(eligible and rng.random() * eligible_share < treated)
        return grade, has_dme, has_treatment
    has_treatment = int(rng.random() < treated)
    if has_treatment and not eligible:
        grade = _grade(rng, shares, minimum=3)
    return grade, has_dme, has_treatment


def sample_plan(rng: np.random.Generator, prevalence: Mapping[str, float]) -> LabelPlan:
    """Sample one image's labels (see the module docstring for the order and the rules)."""
    eye = "right" if rng.random() < prevalence["right_eye"] else "left"
    if rng.random() < prevalence["not_fundus"]:
        return LabelPlan(is_fundus=False, eye=eye)
    grade_shares = np.array([1.0 - sum(prevalence[k] for k in DR_GRADE_KEYS)] + [prevalence[k] for k in DR_GRADE_KEYS])
    grade_shares = np.clip(grade_shares, 0.0, None)
    healthy = min(prevalence["healthy"], grade_shares[0], 1.0 - max(prevalence[name] for name in FINDING_COLUMNS))
    findings = dict.fromkeys(FINDING_COLUMNS, 0)
    grade = 0
    if rng.random() >= healthy:
        raise_by = 1.0 / (1.0 - healthy)
        draws = rng.random(len(FINDING_COLUMNS))
        for name, draw in zip(FINDING_COLUMNS, draws, strict=True):
            findings[name] = int(draw < prevalence[name] * raise_by)
        if findings["is_pm"]:
            findings["is_tessellated"] = 1
        else:
            pm = min(prevalence["is_pm"] * raise_by, 0.999)
            tess = prevalence["is_tessellated"] * raise_by
            findings["is_tessellated"] = int(draws[FINDING_COLUMNS.index("is_tessellated")] * (1 - pm) < tess - pm)
        shares = grade_shares.copy()
        shares[0] = max(shares[0] - healthy, 0.0)
        shares /= max(shares.sum(), 1e-12)
        grade, findings["is_dme"], findings["is_treated"] = _dependent_labels(
            rng,
            shares,
            prevalence["is_dme"] * raise_by,
            prevalence["is_treated"] * raise_by,
            findings["is_rvo"],
            prevalence["is_rvo"] * raise_by,
        )
    heavy = np.array([prevalence[k] for k in DEGRADATIONS])
    weights = np.append(heavy, max(1.0 - heavy.sum(), 0.0))
    choice = int(rng.choice(len(weights), p=weights / weights.sum()))
    degradation = DEGRADATIONS[choice] if choice < len(DEGRADATIONS) else None
    disc_in_field = macula_in_field = True
    framing = rng.random()
    if not any(findings[name] for name in DISC_FINDINGS) and framing < prevalence["disc_out_of_field"]:
        disc_in_field = False
    elif (
        not any(findings[name] for name in MACULA_FINDINGS)
        and 0 <= framing - prevalence["disc_out_of_field"] < prevalence["macula_out_of_field"]
    ):
        macula_in_field = False
    return LabelPlan(True, eye, findings, grade, degradation, disc_in_field, macula_in_field)


def readability(plan: LabelPlan) -> dict[str, int]:
    """Readability flags implied by the plan's degradation and framing.

    heavy blur, under-exposure or dense media opacity: retina and macula unreadable (the bright disc still shows); over-exposure:
    retina and disc unreadable (the disc saturates); artefacts: retina unreadable; a landmark out of the field:
    that landmark unreadable.
    """
    if not plan.is_fundus:
        return dict.fromkeys(READABILITY_COLUMNS, 0)
    flags = dict.fromkeys(READABILITY_COLUMNS, 1)
    if plan.degradation is not None:
        flags["is_retinal_region_readable"] = 0
    if plan.degradation in ("heavy_blur", "underexposed", "media_opacity") or not plan.macula_in_field:
        flags["is_macular_readable"] = 0
    if plan.degradation == "overexposed" or not plan.disc_in_field:
        flags["is_optic_disc_readable"] = 0
    return flags


def diagnostic_advice(findings: Mapping[str, int], dr_grade: int, flags: Mapping[str, int]) -> str:
    """Short Chinese diagnostic advice in the style of the SynFundus release."""
    if not flags["is_fundus"]:
        return "非眼底图像"
    parts = [DR_ADVICE[dr_grade]] if dr_grade else []
    parts += [ADVICE[name] for name in FINDING_COLUMNS if findings.get(name)]
    if not flags["is_retinal_region_readable"]:
        parts.append("图像质量欠佳，建议重新拍摄")
    return "；".join(parts) if parts else "未见明显异常"


def build_record(
    plan: LabelPlan,
    dr_grade: int,
    quality: int,
    file_name: str,
    file_md5: str | None = None,
    media_haze: int | None = None,
) -> dict[str, Any]:
    """The full metadata record, with every schema column in schema order (``media_haze`` only for a fundus)."""
    flags = readability(plan)
    values: dict[str, Any] = dict(plan.findings)
    values["dr_grade"] = int(dr_grade)
    values.update(derive_summary_flags(values))
    values.update(flags)
    values.update(
        file_md5=file_md5,
        file_name=file_name,
        eyes_side=plan.eye,
        retinal_region_quality_score=int(quality if plan.is_fundus else 0),
        diagnosticAdvice=diagnostic_advice(plan.findings, dr_grade, flags),
        media_haze=int(media_haze) if plan.is_fundus and media_haze is not None else None,
    )
    return {name: values[name] for name in COLUMN_NAMES}
