"""The fundus knowledge base (``knowledge_base.yaml``): concepts, their phrases, and the recommended zero-shot tasks
(parsed by `visionclip.zeroshot.tasks`).

Captions for training and prompts for zero-shot evaluation are both built from here, so the model is asked about
findings in the words it was trained on.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .resources import KNOWLEDGE_BASE, data_path
from .schema import COLUMNS_BY_NAME

KNOWLEDGE_BASE_PATH = data_path(KNOWLEDGE_BASE)


@dataclass(frozen=True)
class Concept:
    """A finding or state of the fundus and the phrases that name, describe or deny it."""

    id: str
    names: tuple[str, ...]
    descriptions: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    column: str | None = None
    grade: int | None = None
    absent_value: bool = False  # True when the concept holds where `column` is 0 (readability flags)

    @property
    def phrases(self) -> tuple[str, ...]:
        return self.names + self.descriptions


@dataclass(frozen=True)
class CaptionTemplates:
    """Sentence frames for training captions; placeholders are filled by `visionclip.captions`."""

    openings: tuple[str, ...]
    finding_templates: tuple[str, ...]
    negative_templates: tuple[str, ...]
    quality_templates: tuple[str, ...]


@dataclass(frozen=True)
class KnowledgeBase:
    prompt_templates: tuple[str, ...]
    concepts: dict[str, Concept]
    task_specs: dict[str, Any]  # the recommended zero-shot tasks as written; `visionclip.zeroshot.tasks` parses them
    captions: CaptionTemplates
    source: str = "knowledge base"

    def phrases(self, reference: str) -> tuple[str, ...]:
        """Phrases of a concept reference: ``"glaucoma"`` (names + descriptions) or ``"glaucoma:absent"``."""
        concept_id, _, part = reference.partition(":")
        concept = self.concepts[concept_id]
        return concept.absent if part == "absent" else concept.phrases

    def class_prompts(self, references: tuple[str, ...] | list[str]) -> list[str]:
        """Every template applied to every phrase of the referenced concepts, without duplicates, in order."""
        prompts: dict[str, None] = {}
        for reference in references:
            for phrase in self.phrases(reference):
                for template in self.prompt_templates:
                    prompts[template.format(phrase)] = None
        return list(prompts)

    def free_form_prompts(self, class_name: str) -> list[str]:
        """Prompts for a class the knowledge base does not know: every template around the name itself."""
        return [template.format(class_name) for template in self.prompt_templates]

    def concepts_for_column(self, column: str) -> list[Concept]:
        return [concept for concept in self.concepts.values() if concept.column == column]


def _as_tuple(values: Any, where: str) -> tuple[str, ...]:
    if values is None:
        return ()
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise ValueError(f"{where}: expected a list of non-empty strings, got {values!r}")
    return tuple(values)


def _parse_concept(concept_id: str, raw: dict[str, Any], source: Path) -> Concept:
    where = f"{source}: concept {concept_id!r}"
    unknown = set(raw) - {"names", "descriptions", "absent", "column", "grade", "absent_value"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    column = raw.get("column")
    if column is not None and column not in COLUMNS_BY_NAME:
        raise ValueError(f"{where}: column {column!r} is not a SynFundus-1M column")
    names = _as_tuple(raw.get("names"), f"{where} names")
    if not names:
        raise ValueError(f"{where}: needs at least one name")
    return Concept(
        id=concept_id,
        names=names,
        descriptions=_as_tuple(raw.get("descriptions"), f"{where} descriptions"),
        absent=_as_tuple(raw.get("absent"), f"{where} absent"),
        column=column,
        grade=raw.get("grade"),
        absent_value=bool(raw.get("absent_value", False)),
    )


_CAPTION_PLACEHOLDERS = {
    "openings": (set(), {"{eye}"}),
    "finding_templates": ({"{opening}", "{findings}"}, set()),
    "negative_templates": ({"{negatives}"}, set()),
    "quality_templates": ({"{quality}"}, set()),
}


def _parse_captions(raw: Any, source: Path) -> CaptionTemplates:
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: 'captions' must be a mapping of template lists")
    parsed = {}
    for key, (required, optional) in _CAPTION_PLACEHOLDERS.items():
        templates = _as_tuple(raw.get(key), f"{source}: captions.{key}")
        if not templates:
            raise ValueError(f"{source}: captions.{key} needs at least one template")
        for template in templates:
            found = set(re.findall(r"\{[a-z]*\}", template))
            if not required <= found or not found <= required | optional:
                raise ValueError(
                    f"{source}: captions.{key} template {template!r} must use {sorted(required)}"
                    + (f" and may use {sorted(optional)}" if optional else "")
                )
        parsed[key] = templates
    return CaptionTemplates(**parsed)


def parse_knowledge_base(raw: dict[str, Any], source: Path) -> KnowledgeBase:
    """Validate a knowledge base mapping (as read from YAML) and build it."""
    templates = _as_tuple(raw.get("prompt_templates"), f"{source}: prompt_templates")
    for template in templates:
        if template.count("{}") != 1:
            raise ValueError(f"{source}: prompt template {template!r} must contain '{{}}' exactly once")
    concepts = {cid: _parse_concept(cid, spec, source) for cid, spec in (raw.get("concepts") or {}).items()}
    tasks = raw.get("tasks") or {}
    if not isinstance(tasks, dict):
        raise ValueError(f"{source}: 'tasks' must map task names to tasks")
    return KnowledgeBase(templates, concepts, tasks, _parse_captions(raw.get("captions"), source), str(source))


@functools.cache
def load_knowledge_base(path: str | Path = KNOWLEDGE_BASE_PATH) -> KnowledgeBase:
    """Read and validate the knowledge base YAML file."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return parse_knowledge_base(raw, path)
