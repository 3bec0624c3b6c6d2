"""The SynFundus-1M metadata schema: one definition of every column, used by the converter, the generator,
the captioner and the evaluator.

Column meanings follow the public dump of the release (see ``docs``/SYNFUNDUS notes); the meaning of a few
columns is not documented by the authors and is marked ``uncertain``. The project's own generator uses the
derivation rules in :data:`DERIVED_RULES` for those.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

ColumnKind = Literal["string", "binary", "grade", "score", "text"]


@dataclass(frozen=True)
class Column:
    """One metadata column: its name, kind, meaning and the values it may hold."""

    name: str
    kind: ColumnKind
    meaning: str
    required: bool = True
    uncertain: bool = False
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] | None = None

    def validate(self, value: Any) -> str | None:
        """Return why ``value`` is not allowed in this column, or ``None`` when it is."""
        if value is None or (isinstance(value, float) and value != value):
            return None if not self.required else f"{self.name}: missing value"
        if self.kind in ("string", "text"):
            if not isinstance(value, str):
                return f"{self.name}: expected text, got {type(value).__name__} {value!r}"
            if self.choices is not None and value not in self.choices:
                return f"{self.name}: {value!r} is not one of {list(self.choices)}"
            return None
        integer = as_int(value)
        if integer is None:
            return f"{self.name}: expected an integer, got {value!r}"
        if (self.minimum is not None and integer < self.minimum) or (
            self.maximum is not None and integer > self.maximum
        ):
            return f"{self.name}: {integer} is outside [{self.minimum}, {self.maximum}]"
        return None


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _binary(name: str, meaning: str, *, uncertain: bool = False) -> Column:
    return Column(name, "binary", meaning, uncertain=uncertain, minimum=0, maximum=1)


DR_GRADES: dict[int, str] = {
    0: "no diabetic retinopathy",
    1: "mild non-proliferative diabetic retinopathy",
    2: "moderate non-proliferative diabetic retinopathy",
    3: "severe non-proliferative diabetic retinopathy",
    4: "proliferative diabetic retinopathy",
}

COLUMNS: tuple[Column, ...] = (
    Column("file_md5", "string", "MD5 checksum of the image file (hex)", required=False),
    Column("file_name", "string", "image file name relative to the release folder, e.g. 4899.png"),
    Column("eyes_side", "string", "eye", choices=("left", "right")),
    _binary("is_abnormal", "any abnormality"),
    _binary("is_amd", "age-related macular degeneration"),
    _binary("is_aon", "optic nerve atrophy / anomaly of the optic nerve", uncertain=True),
    _binary("is_crp", "chorioretinopathy, e.g. central serous chorioretinopathy", uncertain=True),
    _binary("is_dm", "diabetes-related finding", uncertain=True),
    _binary("is_dme", "diabetic macular edema"),
    Column("dr_grade", "grade", "diabetic retinopathy grade, ICDR scale", minimum=0, maximum=4),
    _binary("is_em", "epiretinal membrane"),
    _binary("is_gc", "glaucoma"),
    _binary("is_md", "macular disease", uncertain=True),
    _binary("is_mh", "macular hole", uncertain=True),
    _binary("is_htr", "hypertensive retinopathy"),
    _binary("has_lesion", "any lesion visible"),
    _binary("is_pm", "pathologic myopia"),
    _binary("is_rvo", "retinal vein occlusion"),
    _binary("is_tessellated", "tessellated (leopard) fundus"),
    _binary("is_treated", "signs of treatment, e.g. laser scars", uncertain=True),
    _binary("is_fundus", "the image is a fundus photograph (readability)"),
    _binary("is_macular_readable", "the macula region is readable (readability)"),
    _binary("is_optic_disc_readable", "the optic disc is readable (readability)"),
    _binary("is_retinal_region_readable", "the retinal region is readable (readability)"),
    Column(
        "retinal_region_quality_score",
        "score",
        "image quality score of the retinal region (range undocumented; 5 and 9 seen)",
        uncertain=True,
        minimum=0,
        maximum=10,
    ),
    Column(
        "diagnosticAdvice",
        "text",
        "free-text diagnostic advice in Chinese; can disagree with the flags",
        required=False,
    ),
    Column(
        "media_haze",
        "grade",
        "media haze grade of the photograph (0 clear, 1 mild, 2 moderate, 3 dense); written by the project's "
        "generator, not a SynFundus-1M column (its rows leave it empty and their captions do not state haze)",
        required=False,
        minimum=0,
        maximum=3,
    ),
)

COLUMNS_BY_NAME: dict[str, Column] = {column.name: column for column in COLUMNS}
COLUMN_NAMES: tuple[str, ...] = tuple(column.name for column in COLUMNS)
LABEL_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.kind in ("binary", "grade", "score"))

# Disease findings that a caption can state or deny; `dr_grade` is handled as a grade.
FINDING_COLUMNS: tuple[str, ...] = (
    "is_amd",
    "is_aon",
    "is_crp",
    "is_dme",
    "is_em",
    "is_gc",
    "is_mh",
    "is_htr",
    "is_pm",
    "is_rvo",
    "is_tessellated",
    "is_treated",
)
READABILITY_COLUMNS: tuple[str, ...] = (
    "is_fundus",
    "is_macular_readable",
    "is_optic_disc_readable",
    "is_retinal_region_readable",
)
# Summary flags that the generator derives from the findings (documented conventions, see DERIVED_RULES).
SUMMARY_COLUMNS: tuple[str, ...] = ("is_abnormal", "has_lesion", "is_dm", "is_md")

# Findings that put a visible lesion on the retina (as opposed to a change of shape or colour).
LESION_FINDINGS: frozenset[str] = frozenset(
    {"is_amd", "is_crp", "is_dme", "is_em", "is_mh", "is_htr", "is_rvo", "is_treated"}
)
MACULAR_FINDINGS: frozenset[str] = frozenset({"is_amd", "is_crp", "is_dme", "is_em", "is_mh"})

# The label columns a caption depends on that every training record must have (SynFundus-1M has them all).
CAPTIONED_COLUMNS: tuple[str, ...] = ("dr_grade", *FINDING_COLUMNS, *SUMMARY_COLUMNS, *READABILITY_COLUMNS)
# The optional column whose value a caption states as the photograph's haze degree, when a record has it (the
# generator's records do; SynFundus-1M's do not, and their captions state no haze).
HAZE_COLUMN = "media_haze"
HAZE_GRADES: tuple[int, ...] = (1, 2, 3)  # hazy grades a caption asserts; grade 0 (clear) denies them
# The label vector: the `labels` tensor a training batch carries, in this order (two records that agree on it get
# equivalent captions); an optional column a record lacks holds MISSING_LABEL.
LABEL_VECTOR_COLUMNS: tuple[str, ...] = (*CAPTIONED_COLUMNS, HAZE_COLUMN)
MISSING_LABEL = -1

# The facts a caption can assert or deny, and that a record's labels make true or false: each DR grade, each finding,
# each unreadable part, "normal" (no DR, no finding, no abnormality flag) and each hazy grade (none is true of a
# record without a haze grade). `captions.Captioner.claimed_facts` and `losses.label_facts` both index this tuple.
FACTS: tuple[str, ...] = (
    *(f"dr_grade={grade}" for grade in range(1, 5)),
    *FINDING_COLUMNS,
    *(f"{column}=0" for column in READABILITY_COLUMNS),
    "normal",
    *(f"{HAZE_COLUMN}={grade}" for grade in HAZE_GRADES),
)

DERIVED_RULES: dict[str, str] = {
    "is_dm": "dr_grade >= 1 or is_dme",
    "is_md": "any of " + ", ".join(sorted(MACULAR_FINDINGS)),
    "has_lesion": "dr_grade >= 1 or any of " + ", ".join(sorted(LESION_FINDINGS)),
    "is_abnormal": "dr_grade >= 1 or any finding column",
}


def derive_summary_flags(record: Mapping[str, Any]) -> dict[str, int]:
    """Compute ``is_dm``, ``is_md``, ``has_lesion`` and ``is_abnormal`` from a record's findings."""
    grade = int(record.get("dr_grade", 0) or 0)
    findings = {name: int(record.get(name, 0) or 0) for name in FINDING_COLUMNS}
    return {
        "is_dm": int(grade >= 1 or findings["is_dme"] == 1),
        "is_md": int(any(findings[name] for name in MACULAR_FINDINGS)),
        "has_lesion": int(grade >= 1 or any(findings[name] for name in LESION_FINDINGS)),
        "is_abnormal": int(grade >= 1 or any(findings.values())),
    }


def validate_record(record: Mapping[str, Any]) -> list[str]:
    """Return every problem with one metadata record (empty when it is valid)."""
    problems = []
    for column in COLUMNS:
        if column.name not in record:
            if column.required:
                problems.append(f"{column.name}: column missing")
            continue
        problem = column.validate(record[column.name])
        if problem:
            problems.append(problem)
    return problems


def datasets_features(image_column: str = "image", extra_columns: Mapping[str, str] | None = None):
    """The `datasets.Features` of a converted shard: an Image column plus every schema column.

    ``extra_columns`` maps unknown release columns (carried through as strings) to their dtype name.
    """
    from datasets import Features, Image, Value  # heavy (~1 s): most importers of the schema never need it

    dtypes = {"string": "string", "text": "string", "binary": "int8", "grade": "int8", "score": "int16"}
    features = {image_column: Image()}
    for column in COLUMNS:
        features[column.name] = Value(dtypes[column.kind])
    for name, dtype in (extra_columns or {}).items():
        features[name] = Value(dtype)
    return Features(features)
