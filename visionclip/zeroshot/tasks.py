"""Evaluation task definitions: dataset label -> class prompts, from YAML files (`configs/eval_tasks/*.yaml`).

A class is a list of knowledge-base concept references (`glaucoma`, `glaucoma:absent`) or `{prompts: [...]}` with
literal prompts. Users add a task by writing one such file and passing its path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..knowledge import KnowledgeBase, load_knowledge_base
from ..resources import EVAL_TASKS, data_path
from ..schema import COLUMNS_BY_NAME

TASKS_DIR = data_path(EVAL_TASKS)


@dataclass(frozen=True)
class EvalTask:
    """Ordered classes (dataset label values) with a prompt ensemble each."""

    name: str
    description: str
    ordinal: bool
    labels: tuple[str, ...]
    prompts: tuple[tuple[str, ...], ...]
    synthetic_conditions: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def index(self, label: Any, where: str = "") -> int:
        """Class index of a dataset label; a clear error for labels the task does not define."""
        text = str(label).strip()
        if text.endswith(".0") and text[:-2].isdigit():
            text = text[:-2]  # labels read as floats by CSV readers
        if text not in self.labels:
            raise ValueError(f"{where}label {label!r} is not a class of task {self.name!r} {list(self.labels)}")
        return self.labels.index(text)

    def class_prompts(self) -> dict[str, list[str]]:
        return {label: list(prompts) for label, prompts in zip(self.labels, self.prompts, strict=True)}


def list_tasks() -> list[str]:
    return sorted(path.stem for path in TASKS_DIR.glob("*.yaml"))


def parse_task(name: str, raw: Any, knowledge: KnowledgeBase, source: str) -> EvalTask:
    if not isinstance(raw, dict) or not isinstance(raw.get("classes"), dict) or len(raw["classes"]) < 2:
        raise ValueError(f"{source}: a task needs a 'classes' mapping with at least two classes")
    labels, prompts = [], []
    for label, spec in raw["classes"].items():
        if isinstance(spec, dict):
            literal = spec.get("prompts")
            if not isinstance(literal, list) or not literal or not all(isinstance(p, str) for p in literal):
                raise ValueError(f"{source}: class {label!r} needs a non-empty 'prompts' list of strings")
            class_prompts = tuple(literal)
        elif isinstance(spec, list) and spec:
            for reference in spec:
                concept = str(reference).partition(":")[0]
                if concept not in knowledge.concepts:
                    raise ValueError(f"{source}: class {label!r} refers to unknown concept {concept!r}")
            class_prompts = tuple(knowledge.class_prompts(spec))
        else:
            raise ValueError(f"{source}: class {label!r} must be a list of concepts or {{prompts: [...]}}")
        labels.append(str(label))
        prompts.append(class_prompts)
    return EvalTask(
        name,
        str(raw.get("description", "")),
        bool(raw.get("ordinal", False)),
        tuple(labels),
        tuple(prompts),
        _parse_conditions(raw.get("synthetic") or {}, labels, source),
    )


def _parse_conditions(raw: Any, labels: list[str], source: str) -> dict[str, dict[str, list[int]]]:
    """`synthetic:` label -> {schema column: allowed values}: how generated records map onto the task's classes."""
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: 'synthetic' must map class labels to column conditions")
    conditions = {}
    for label, condition in raw.items():
        if str(label) not in labels:
            raise ValueError(f"{source}: synthetic condition for unknown class {label!r}")
        if not isinstance(condition, dict) or not condition:
            raise ValueError(f"{source}: synthetic condition of {label!r} must map columns to allowed values")
        for column, values in condition.items():
            if column not in COLUMNS_BY_NAME or not isinstance(values, list):
                raise ValueError(f"{source}: synthetic condition of {label!r}: {column!r}: {values!r}")
        conditions[str(label)] = {column: [int(v) for v in values] for column, values in condition.items()}
    return conditions


def load_task(name_or_path: str, knowledge: KnowledgeBase | None = None) -> EvalTask:
    """A task by name (see `list_tasks()`) or from a YAML file."""
    knowledge = knowledge or load_knowledge_base()
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = TASKS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ValueError(f"Unknown task {name_or_path!r}: choose one of {list_tasks()} or give a YAML file")
    return parse_task(path.stem, yaml.safe_load(path.read_text(encoding="utf-8")), knowledge, str(path))
