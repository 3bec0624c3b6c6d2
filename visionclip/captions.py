"""Natural-language captions from SynFundus-1M labels, built from the knowledge base.

A caption states every positive finding (by name, by what it looks like, or both), sometimes denies a few absent
findings, mentions image quality where a readability flag is 0, states the media haze degree where the record has
one (the generator's `media_haze`; SynFundus-1M rows have none and get no haze statement), and sometimes the eye. It is deterministic for
(record, epoch, seed) and varies across epochs, so each epoch sees a different description of the same image.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .knowledge import Concept, KnowledgeBase, load_knowledge_base
from .schema import (
    FACTS,
    FINDING_COLUMNS,
    HAZE_COLUMN,
    HAZE_GRADES,
    LESION_FINDINGS,
    MACULAR_FINDINGS,
    READABILITY_COLUMNS,
)
from .seeding import stable_seed

_GRADE_FACTS = tuple(index for index, fact in enumerate(FACTS) if fact.startswith("dr_grade="))
_HAZE_FACTS = tuple(FACTS.index(f"{HAZE_COLUMN}={grade}") for grade in HAZE_GRADES)
CLEAR_MEDIA_PROBABILITY = 0.3  # how often a caption says the view is clear (hazy media are always stated)
GOOD_QUALITY_PROBABILITY = 0.2

Polarity = Literal["present", "absent", "quality"]


@dataclass(frozen=True)
class CaptionPart:
    """One statement of a caption: which concept, whether it is asserted or denied, and the words used."""

    concept: str
    polarity: Polarity
    phrase: str


def _flag(record: Mapping[str, Any], column: str) -> int:
    value = record.get(column)
    try:
        return int(value) if value is not None and value == value else 0
    except (TypeError, ValueError):
        return 0


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


class Captioner:
    """Turns one metadata record into a varied English caption.

    Args:
        knowledge: the knowledge base (default: the project's).
        seed: global seed; captions are a pure function of (record key, epoch, seed).
        negative_probability: chance that a caption also denies some absent findings.
        max_negatives: at most this many denials per caption.
        include_advice: append the record's free-text `diagnosticAdvice` (Chinese in SynFundus-1M).
        findings_per_caption: state at most this many of the record's findings, sampled anew each epoch (FLAIR
            describes one category per image and step); 0 states them all.
    """

    def __init__(
        self,
        knowledge: KnowledgeBase | None = None,
        seed: int = 0,
        negative_probability: float = 0.5,
        max_negatives: int = 2,
        include_advice: bool = False,
        findings_per_caption: int = 0,
    ):
        if not 0.0 <= negative_probability <= 1.0:
            raise ValueError(f"negative_probability must be in [0, 1], got {negative_probability}")
        if findings_per_caption < 0:
            raise ValueError(f"findings_per_caption must be 0 (all) or positive, got {findings_per_caption}")
        self.findings_per_caption = findings_per_caption
        self.knowledge = knowledge or load_knowledge_base()
        self.seed = seed
        self.negative_probability = negative_probability
        self.max_negatives = max_negatives
        self.include_advice = include_advice
        concepts = self.knowledge.concepts
        self._by_column = {c.column: c for c in concepts.values() if c.column and c.grade is None}
        self._by_grade = {c.grade: c for c in concepts.values() if c.column == "dr_grade"}
        self._by_haze = {c.grade: c for c in concepts.values() if c.column == HAZE_COLUMN}
        missing = [column for column in FINDING_COLUMNS if column not in self._by_column]
        if missing or sorted(self._by_grade) != [0, 1, 2, 3, 4]:
            raise ValueError(f"knowledge base lacks concepts for {missing or 'dr_grade 0-4'}")

    # ------------------------------------------------------------------------------------- statements
    def positive_concepts(self, record: Mapping[str, Any]) -> list[Concept]:
        """Concepts the record asserts, most specific first; summary flags only when nothing explains them."""
        grade = _flag(record, "dr_grade")
        found = [self._by_grade[grade]] if grade >= 1 else []
        found += [self._by_column[column] for column in FINDING_COLUMNS if _flag(record, column)]
        positives = {column for column in FINDING_COLUMNS if _flag(record, column)}
        if _flag(record, "is_dm") and grade == 0 and "is_dme" not in positives:
            found.append(self._by_column["is_dm"])
        if _flag(record, "is_md") and not positives & MACULAR_FINDINGS:
            found.append(self._by_column["is_md"])
        if _flag(record, "has_lesion") and grade == 0 and not positives & LESION_FINDINGS:
            found.append(self._by_column["has_lesion"])
        if _flag(record, "is_abnormal") and not found:
            found.append(self._by_column["is_abnormal"])
        return found

    def negative_candidates(self, record: Mapping[str, Any]) -> list[tuple[Concept, str]]:
        """Findings the record denies, as (concept, reference) pairs whose absent phrases may be stated."""
        candidates = [(self._by_column[c], c) for c in FINDING_COLUMNS if not _flag(record, c)]
        if _flag(record, "dr_grade") == 0 and not _flag(record, "is_dm"):
            candidates.append((self.knowledge.concepts["diabetic_retinopathy"], "dr_grade"))
        return [(concept, ref) for concept, ref in candidates if concept.absent]

    def quality_concepts(self, record: Mapping[str, Any]) -> list[Concept]:
        return [
            self._by_column[column] for column in READABILITY_COLUMNS if column in record and not _flag(record, column)
        ]

    def haze_concept(self, record: Mapping[str, Any]) -> Concept | None:
        """The concept for the record's media haze grade; None when the record has no grade (SynFundus-1M)."""
        value = record.get(HAZE_COLUMN)
        if value is None or value != value or not _flag(record, "is_fundus"):
            return None
        try:
            return self._by_haze.get(int(value))
        except (TypeError, ValueError):
            return None

    # --------------------------------------------------------------------------------------- assembly
    def parts(self, record: Mapping[str, Any], epoch: int = 0) -> list[CaptionPart]:
        """The statements of one caption, before they are put into sentences."""
        rng = self._rng(record, epoch)
        quality = self.quality_concepts(record)
        not_fundus = any(concept.column == "is_fundus" for concept in quality)
        parts = []
        if not not_fundus:
            positives = self.positive_concepts(record) or [self.knowledge.concepts["normal"]]
            rng.shuffle(positives)
            if self.findings_per_caption:
                positives = positives[: self.findings_per_caption]
            parts += [CaptionPart(c.id, "present", self._describe(c, rng)) for c in positives]
            candidates = self.negative_candidates(record)
            if candidates and rng.random() < self.negative_probability:
                count = rng.randint(1, min(self.max_negatives, len(candidates)))
                for concept, _ in rng.sample(candidates, count):
                    parts.append(CaptionPart(concept.id, "absent", rng.choice(concept.absent)))
        for concept in quality:
            parts.append(CaptionPart(concept.id, "quality", rng.choice(concept.phrases)))
        haze = self.haze_concept(record)
        # Only records with a haze grade draw here, so a SynFundus-1M row's caption is what it always was.
        if haze is not None and (haze.grade or rng.random() < CLEAR_MEDIA_PROBABILITY):
            parts.append(CaptionPart(haze.id, "quality", rng.choice(haze.phrases)))
        if not quality and not (haze is not None and haze.grade) and rng.random() < GOOD_QUALITY_PROBABILITY:
            good = self.knowledge.concepts["good_quality"]
            parts.append(CaptionPart(good.id, "quality", rng.choice(good.phrases)))
        return parts

    def __call__(self, record: Mapping[str, Any], epoch: int = 0) -> str:
        """One caption for `record` in `epoch`."""
        return self.caption_with_facts(record, epoch)[0]

    def caption_with_facts(self, record: Mapping[str, Any], epoch: int = 0) -> tuple[str, list[int]]:
        """The caption and what it claims: `2 * len(FACTS)` flags, the facts asserted then the facts denied."""
        parts = self.parts(record, epoch)
        return self._sentences(record, epoch, parts), self.claimed_facts(parts)

    def claimed_facts(self, parts: list[CaptionPart]) -> list[int]:
        """`2 * len(FACTS)` 0/1 flags: which facts the statements assert, then which they deny."""
        flags = [0] * (2 * len(FACTS))
        for part in parts:
            concept = self.knowledge.concepts[part.concept]
            if concept.column == HAZE_COLUMN and not concept.grade:  # "a clear view" denies every hazy grade
                for index in _HAZE_FACTS:
                    flags[len(FACTS) + index] = 1
                continue
            facts = self._concept_facts(concept)
            if part.polarity != "absent" and len(facts) > 1:
                continue  # "some DR" asserts one of several facts: nothing a single flag can check
            offset = len(FACTS) if part.polarity == "absent" else 0
            for index in facts:
                flags[offset + index] = 1
        return flags

    def _concept_facts(self, concept: Concept) -> tuple[int, ...]:
        """The facts a concept names; the general DR concept stands for every grade. Summary flags (abnormal,
        lesion, diabetes, macular disease) name no fact: they are implied by the findings, not checked."""
        if concept.id == "normal":
            return (FACTS.index("normal"),)
        if concept.id == "diabetic_retinopathy":
            return _GRADE_FACTS
        if concept.column == "dr_grade" and concept.grade:
            return (FACTS.index(f"dr_grade={concept.grade}"),)
        if concept.column in FINDING_COLUMNS:
            return (FACTS.index(concept.column),)
        if concept.column == HAZE_COLUMN and concept.grade:
            return (FACTS.index(f"{HAZE_COLUMN}={concept.grade}"),)
        if concept.column in READABILITY_COLUMNS and concept.absent_value:
            return (FACTS.index(f"{concept.column}=0"),)
        return ()

    def _sentences(self, record: Mapping[str, Any], epoch: int, parts: list[CaptionPart]) -> str:
        rng = self._rng(record, epoch, "sentences")
        templates = self.knowledge.captions
        eye = record.get("eyes_side")
        openings = [o for o in templates.openings if "{eye}" not in o or eye in ("left", "right")]
        opening = rng.choice(openings).format(eye=eye)
        present = [p.phrase for p in parts if p.polarity == "present"]
        sentences = [
            rng.choice(templates.finding_templates).format(opening=opening, findings=_join(present))
            if present
            else opening + "."
        ]
        absent = [p.phrase for p in parts if p.polarity == "absent"]
        if absent:
            sentences.append(_sentence_case(rng.choice(templates.negative_templates).format(negatives=_join(absent))))
        quality = [p.phrase for p in parts if p.polarity == "quality"]
        if quality:
            sentences.append(_sentence_case(rng.choice(templates.quality_templates).format(quality=_join(quality))))
        advice = record.get("diagnosticAdvice")
        if self.include_advice and isinstance(advice, str) and advice.strip():
            sentences.append(advice.strip())
        return " ".join(sentences)

    def _describe(self, concept: Concept, rng: random.Random) -> str:
        roll = rng.random()
        if roll < 0.4 or not concept.descriptions:
            return rng.choice(concept.names)
        if roll < 0.8:
            return rng.choice(concept.descriptions)
        return f"{rng.choice(concept.names)} with {rng.choice(concept.descriptions)}"

    def _rng(self, record: Mapping[str, Any], epoch: int, *salt: str) -> random.Random:
        key = record.get("file_md5") or record.get("file_name") or repr(sorted(record.items(), key=str))
        return random.Random(stable_seed(key, epoch, self.seed, *salt))


if __name__ == "__main__":  # `python -m visionclip.captions`; the command lives with the other CLIs
    from .cli.captions import main

    raise SystemExit(main())
