"""The zero-shot task: ordered classes with a prompt ensemble each, and the one parser that builds it.

A task is written as a mapping, in the knowledge base's `tasks:` section (the tasks recommended with every model),
in a YAML file of its own (`visionclip/data/eval_tasks/*.yaml`, or any file a user passes by path), or in code (the
held-out finding questions of training)::

    description: "REFUGE glaucoma"
    ordinal: false
    classes:                        # class label -> knowledge-base concept references, or literal prompts
      non_glaucoma: ["glaucoma:absent", normal]
      glaucoma: [glaucoma]
      # or: glaucoma: {prompts: ["A fundus photograph of glaucoma."]}
    synthetic:                      # optional: SynFundus-schema records -> classes (allowed values per column)
      non_glaucoma: {is_gc: [0]}
      glaucoma: {is_gc: [1]}
    labels:                         # optional: dataset label values -> classes, where they differ (many to one)
      "0": non_glaucoma

A saved model carries its recommended tasks in its config (`zero_shot_tasks`) as `ZeroShotTask.to_config()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..knowledge import KnowledgeBase, load_knowledge_base
from ..resources import EVAL_TASKS, data_path
from ..schema import COLUMNS_BY_NAME, FINDING_COLUMNS

TASKS_DIR = data_path(EVAL_TASKS)
_TASK_KEYS = {"description", "ordinal", "classes", "synthetic", "labels"}
ABSENT, PRESENT = "absent", "present"  # the classes of a finding question, in this order


@dataclass(frozen=True)
class ZeroShotTask:
    """Ordered classes (dataset label values) with a prompt ensemble each, and optionally how SynFundus-schema
    records (generated, or converted SynFundus-1M) map onto the classes."""

    name: str
    description: str
    ordinal: bool
    labels: tuple[str, ...]
    prompts: tuple[tuple[str, ...], ...]
    synthetic_conditions: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    dataset_labels: dict[str, str] = field(default_factory=dict)  # dataset label -> class, where they differ

    def index(self, label: Any, where: str = "") -> int:
        """Class index of a dataset label; a clear error for labels the task does not define."""
        text = str(label).strip()
        if text.endswith(".0") and text[:-2].isdigit():
            text = text[:-2]  # labels read as floats by CSV readers
        text = self.dataset_labels.get(text, text)
        if text not in self.labels:
            known = sorted({*self.labels, *self.dataset_labels})
            raise ValueError(f"{where}label {label!r} is not a class of task {self.name!r} {known}")
        return self.labels.index(text)

    def class_prompts(self) -> dict[str, list[str]]:
        return {label: list(prompts) for label, prompts in zip(self.labels, self.prompts, strict=True)}

    def record_class(self, record: Mapping[str, Any]) -> int | None:
        """The class whose `synthetic` condition a record meets (a missing value counts as 0); None unless exactly
        one class matches."""
        matches = [
            self.labels.index(label)
            for label, condition in self.synthetic_conditions.items()
            if all(int(record.get(column) or 0) in values for column, values in condition.items())
        ]
        return matches[0] if len(matches) == 1 else None

    def to_config(self) -> dict[str, Any]:
        """The plain form saved in a model's config, which `VisionCLIPModel.zero_shot(task=...)` reads."""
        return {
            "description": self.description,
            "ordinal": self.ordinal,
            "classes": list(self.labels),
            "prompts": [list(prompts) for prompts in self.prompts],
        }

    @classmethod
    def from_config(cls, name: str, saved: Mapping[str, Any]) -> ZeroShotTask:
        """A task as saved in a model's config by `to_config`."""
        return cls(
            name,
            str(saved.get("description", "")),
            bool(saved.get("ordinal", False)),
            tuple(saved["classes"]),
            tuple(tuple(prompts) for prompts in saved["prompts"]),
        )


def parse_task(name: str, raw: Any, knowledge: KnowledgeBase, where: str) -> ZeroShotTask:
    """Validate a task mapping (see the module docstring) and build it; `where` prefixes every error."""
    if not isinstance(raw, dict) or not isinstance(raw.get("classes"), dict) or len(raw["classes"]) < 2:
        raise ValueError(f"{where}: a task needs a 'classes' mapping with at least two classes")
    unknown = set(raw) - _TASK_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (a task has {sorted(_TASK_KEYS)})")
    labels = [str(label) for label in raw["classes"]]
    prompts = [_class_prompts(label, spec, knowledge, where) for label, spec in raw["classes"].items()]
    return ZeroShotTask(
        name,
        str(raw.get("description", "")),
        bool(raw.get("ordinal", False)),
        tuple(labels),
        tuple(prompts),
        _parse_conditions(raw.get("synthetic") or {}, labels, where),
        _parse_dataset_labels(raw.get("labels") or {}, labels, where),
    )


def _class_prompts(label: Any, spec: Any, knowledge: KnowledgeBase, where: str) -> tuple[str, ...]:
    if isinstance(spec, dict):
        literal = spec.get("prompts")
        if not isinstance(literal, list) or not literal or not all(isinstance(p, str) and p for p in literal):
            raise ValueError(f"{where}: class {label!r} needs a non-empty 'prompts' list of strings")
        return tuple(literal)
    if not isinstance(spec, list) or not spec or not all(isinstance(r, str) and r.strip() for r in spec):
        raise ValueError(f"{where}: class {label!r} must be a list of concepts or {{prompts: [...]}}")
    for reference in spec:
        concept, _, part = reference.partition(":")
        if concept not in knowledge.concepts:
            raise ValueError(f"{where}: class {label!r} refers to unknown concept {concept!r}")
        if part not in ("", "absent"):
            raise ValueError(f"{where}: class {label!r}: {reference!r} (only ':absent' is allowed)")
        if part == "absent" and not knowledge.concepts[concept].absent:
            raise ValueError(f"{where}: class {label!r}: concept {concept!r} has no absent phrases")
    return tuple(knowledge.class_prompts(spec))


def _parse_conditions(raw: Any, labels: list[str], where: str) -> dict[str, dict[str, list[int]]]:
    """`synthetic:` label -> {schema column: allowed values}: how generated records map onto the task's classes."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: 'synthetic' must map class labels to column conditions")
    conditions = {}
    for label, condition in raw.items():
        if str(label) not in labels:
            raise ValueError(f"{where}: synthetic condition for unknown class {label!r}")
        if not isinstance(condition, dict) or not condition:
            raise ValueError(f"{where}: synthetic condition of {label!r} must map columns to allowed values")
        for column, values in condition.items():
            if column not in COLUMNS_BY_NAME or not isinstance(values, list):
                raise ValueError(f"{where}: synthetic condition of {label!r}: {column!r}: {values!r}")
        conditions[str(label)] = {column: [int(v) for v in values] for column, values in condition.items()}
    return conditions


def _parse_dataset_labels(raw: Any, labels: list[str], where: str) -> dict[str, str]:
    """`labels:` dataset label -> class label, for datasets whose label values are not the task's classes."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: 'labels' must map dataset label values to classes")
    mapping = {str(value): str(label) for value, label in raw.items()}
    unknown = sorted({label for label in mapping.values() if label not in labels})
    if unknown:
        raise ValueError(f"{where}: 'labels' maps onto {unknown}, which are not classes {labels}")
    return mapping


def recommended_tasks(knowledge: KnowledgeBase | None = None) -> dict[str, ZeroShotTask]:
    """The knowledge base's `tasks:` section: the tasks saved with every model."""
    knowledge = knowledge or load_knowledge_base()
    return {
        name: parse_task(name, raw, knowledge, f"{knowledge.source}: task {name!r}")
        for name, raw in knowledge.task_specs.items()
    }


def finding_tasks(knowledge: KnowledgeBase | None = None) -> list[ZeroShotTask]:
    """Binary questions (absent, present) on SynFundus-schema records: any DR (grade >= 1), referable DR
    (grade >= 2) and one per finding column, each prompted with its concepts' phrases and their denials."""
    knowledge = knowledge or load_knowledge_base()
    grades = [f"dr_grade_{grade}" for grade in range(5)]
    questions = [  # name, absent references, present references, column, lowest value that is present
        (
            "diabetic_retinopathy",
            ["diabetic_retinopathy:absent", grades[0]],
            ["diabetic_retinopathy", *grades[1:]],
            "dr_grade",
            1,
        ),
        ("referable_dr", grades[:2], grades[2:], "dr_grade", 2),
    ]
    for column in FINDING_COLUMNS:
        concept = next(c for c in knowledge.concepts.values() if c.column == column and c.grade is None)
        questions.append((concept.id, [f"{concept.id}:absent"], [concept.id], column, 1))
    return [
        parse_task(
            name,
            {"classes": {ABSENT: absent, PRESENT: present}, "synthetic": _threshold_conditions(column, threshold)},
            knowledge,
            f"finding question {name!r}",
        )
        for name, absent, present, column, threshold in questions
    ]


def _threshold_conditions(column: str, threshold: int) -> dict[str, dict[str, list[int]]]:
    """`present` where the column's value is at least `threshold`, `absent` below it."""
    spec = COLUMNS_BY_NAME[column]
    values = range(spec.minimum or 0, spec.maximum + 1)
    return {
        ABSENT: {column: [v for v in values if v < threshold]},
        PRESENT: {column: [v for v in values if v >= threshold]},
    }


def list_tasks() -> list[str]:
    return sorted(path.stem for path in TASKS_DIR.glob("*.yaml"))


def load_task(name_or_path: str, knowledge: KnowledgeBase | None = None) -> ZeroShotTask:
    """A task by name (see `list_tasks()`) or from a YAML file."""
    knowledge = knowledge or load_knowledge_base()
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = TASKS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ValueError(f"Unknown task {name_or_path!r}: choose one of {list_tasks()} or give a YAML file")
    return parse_task(path.stem, yaml.safe_load(path.read_text(encoding="utf-8")), knowledge, str(path))
