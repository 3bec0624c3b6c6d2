from __future__ import annotations

import os
import random
import re
import subprocess
import sys

import pytest

from visionclip.captions import Captioner
from visionclip.knowledge import load_knowledge_base
from visionclip.schema import COLUMN_NAMES, FACTS, FINDING_COLUMNS, READABILITY_COLUMNS, derive_summary_flags

KNOWLEDGE = load_knowledge_base()
CAPTIONER = Captioner()


def make_record(rng: random.Random, index: int) -> dict:
    record = {name: 0 for name in COLUMN_NAMES}
    record.update(
        file_name=f"{index}.png",
        file_md5=f"{index:032x}",
        eyes_side=rng.choice(["left", "right"]),
        retinal_region_quality_score=9,
        diagnosticAdvice="",
    )
    record["dr_grade"] = rng.choice([0, 0, 0, 1, 2, 3, 4])
    for column in FINDING_COLUMNS:
        record[column] = int(rng.random() < 0.12)
    for column in READABILITY_COLUMNS:
        record[column] = int(rng.random() > 0.1)
    record["is_fundus"] = int(rng.random() > 0.03)
    record.update(derive_summary_flags(record))
    return record


_RNG = random.Random(7)
RECORDS = [make_record(_RNG, i) for i in range(400)]


def mentions(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", text, flags=re.IGNORECASE) is not None


def concept_for(column: str, grade: int | None = None):
    for concept in KNOWLEDGE.concepts.values():
        if concept.column == column and concept.grade == grade:
            return concept
    raise AssertionError(f"no concept for {column} {grade}")


def test_every_positive_label_is_mentioned():
    for record in RECORDS:
        if not record["is_fundus"]:
            continue
        for epoch in range(3):
            text = CAPTIONER(record, epoch)
            expected = [concept_for(c) for c in FINDING_COLUMNS if record[c]]
            if record["dr_grade"]:
                expected.append(concept_for("dr_grade", record["dr_grade"]))
            for concept in expected:
                assert any(mentions(text, p) for p in concept.phrases), f"{concept.id} missing from {text!r}"


def test_no_negative_label_is_claimed():
    for record in RECORDS:
        for epoch in range(3):
            text = CAPTIONER(record, epoch)
            parts = CAPTIONER.parts(record, epoch)
            for part in parts:  # denials and quality remarks may reuse words; remove them before checking
                if part.polarity != "present":
                    text = text.replace(part.phrase, " ").replace(part.phrase[:1].upper() + part.phrase[1:], " ")
            asserted = {p.phrase for p in parts if p.polarity == "present"}
            negatives = [concept_for(c) for c in FINDING_COLUMNS if not record[c]]
            negatives += [concept_for("dr_grade", g) for g in range(1, 5) if g != record["dr_grade"]]
            for concept in negatives:
                for phrase in concept.phrases:
                    if not any(phrase in a for a in asserted):
                        assert not mentions(text, phrase), f"{concept.id} claimed in {CAPTIONER(record, epoch)!r}"


def test_quality_statements_follow_readability_columns():
    for record in RECORDS:
        parts = CAPTIONER.parts(record, epoch=1)
        haze = {concept.id for concept in KNOWLEDGE.concepts_for_column("media_haze")}  # tested below
        quality = {p.concept for p in parts if p.polarity == "quality"} - haze
        unreadable = {concept_for(c).id for c in READABILITY_COLUMNS if not record[c]}
        assert unreadable <= quality
        assert quality - unreadable <= ({"good_quality"} if not unreadable else set())
        if not record["is_fundus"]:
            assert not [p for p in parts if p.polarity != "quality"]


def test_summary_flags_are_mentioned_when_nothing_explains_them():
    record = dict(
        RECORDS[0],
        dr_grade=0,
        is_dm=1,
        is_abnormal=1,
        is_md=0,
        has_lesion=0,
        is_fundus=1,
        **{c: 0 for c in FINDING_COLUMNS},
    )
    assert "diabetic_changes" in {p.concept for p in CAPTIONER.parts(record)}
    normal = dict(record, is_dm=0, is_abnormal=0)
    assert {p.concept for p in CAPTIONER.parts(normal) if p.polarity == "present"} == {"normal"}


def record_facts(record: dict) -> set[str]:
    """What is true of a record, written from the schema independently of `losses.label_facts`."""
    facts = {f"dr_grade={record['dr_grade']}"} if record["dr_grade"] else set()
    facts |= {c for c in FINDING_COLUMNS if record[c]}
    facts |= {f"{c}=0" for c in READABILITY_COLUMNS if not record[c]}
    if record.get("media_haze"):
        facts.add(f"media_haze={record['media_haze']}")
    flags = ("is_abnormal", "has_lesion", "is_dm", "is_md")
    if not record["dr_grade"] and not any(record[c] for c in (*FINDING_COLUMNS, *flags)):
        facts.add("normal")
    return facts


@pytest.mark.parametrize("findings_per_caption", [0, 1])
def test_claimed_facts_are_true_of_the_record(findings_per_caption):
    captioner = Captioner(findings_per_caption=findings_per_caption)
    for record in RECORDS:
        true = record_facts(record)
        for epoch in range(3):
            text, flags = captioner.caption_with_facts(record, epoch)
            assert text == captioner(record, epoch)
            asserted = {FACTS[i] for i, flag in enumerate(flags[: len(FACTS)]) if flag}
            denied = {FACTS[i] for i, flag in enumerate(flags[len(FACTS) :]) if flag}
            assert asserted <= true, text
            assert not denied & true, text
            if findings_per_caption == 0 and record["is_fundus"]:
                assert asserted == true, text


def test_one_finding_per_caption_covers_every_finding_across_epochs():
    captioner = Captioner(findings_per_caption=1)
    multi = [r for r in RECORDS if r["is_fundus"] and sum(r[c] for c in FINDING_COLUMNS) >= 2][:20]
    assert multi
    for record in multi:
        seen = set()
        for epoch in range(40):
            present = [p for p in captioner.parts(record, epoch) if p.polarity == "present"]
            assert len(present) == 1
            seen.add(present[0].concept)
        assert {concept_for(c).id for c in FINDING_COLUMNS if record[c]} <= seen
    with pytest.raises(ValueError, match="findings_per_caption"):
        Captioner(findings_per_caption=-1)


def test_captions_are_deterministic_and_vary_across_epochs():
    record = next(r for r in RECORDS if r["is_fundus"] and r["dr_grade"] >= 2)
    assert CAPTIONER(record, 3) == Captioner()(record, 3)
    assert len({CAPTIONER(record, epoch) for epoch in range(12)}) >= 8
    assert Captioner(seed=1)(record, 0) != CAPTIONER(record, 0) or Captioner(seed=2)(record, 0) != CAPTIONER(record, 0)
    texts = {CAPTIONER(r, 0) for r in RECORDS}
    assert len(texts) > 0.8 * len(RECORDS)


def test_captions_do_not_depend_on_the_process_hash_seed():
    code = (
        "import json,sys; sys.path.insert(0, '.'); from tests.test_captions import RECORDS, CAPTIONER; "
        "print(json.dumps([CAPTIONER(r, 2) for r in RECORDS[:20]]))"
    )
    outputs = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        completed = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            cwd=os.path.dirname(os.path.dirname(__file__)),
        )
        assert completed.returncode == 0, completed.stderr
        outputs.add(completed.stdout)
    assert len(outputs) == 1


def test_advice_passes_through_only_when_asked():
    record = dict(RECORDS[1], diagnosticAdvice="疑似青光眼")
    assert "疑似青光眼" not in CAPTIONER(record)
    assert Captioner(include_advice=True)(record).endswith("疑似青光眼")
    with pytest.raises(ValueError, match="negative_probability"):
        Captioner(negative_probability=2.0)


HAZE_PHRASES = {grade: ("clear_media", "mild_haze", "moderate_haze", "severe_haze")[grade] for grade in range(4)}


def haze_phrases_in(text: str) -> set[int]:
    """The haze grades whose phrases a caption uses."""
    return {
        grade for grade, concept in HAZE_PHRASES.items() if any(mentions(text, p) for p in KNOWLEDGE.phrases(concept))
    }


@pytest.mark.parametrize("grade", [1, 2, 3])
def test_captions_state_the_media_haze_grade(grade):
    for index, record in enumerate(r for r in RECORDS if r["is_fundus"]):
        record = dict(record, media_haze=grade)
        if grade == 3:
            record.update(is_retinal_region_readable=0, is_macular_readable=0)
        for epoch in range(2):
            text = CAPTIONER(record, epoch)
            assert haze_phrases_in(text) == {grade}, (index, epoch, text)


def test_clear_media_is_stated_sometimes_and_never_as_haze():
    stated = 0
    for record in (dict(r, media_haze=0) for r in RECORDS if r["is_fundus"]):
        found = haze_phrases_in(CAPTIONER(record, 0))
        assert found <= {0}
        stated += bool(found)
    assert 0.15 < stated / sum(r["is_fundus"] for r in RECORDS) < 0.5


def test_a_record_without_media_haze_captions_as_a_synfundus_row():
    """A converted SynFundus-1M row has no `media_haze` (missing or empty): its caption states no haze degree and
    is the caption the record gets with the column absent."""
    for record in RECORDS[:100]:
        row = {name: value for name, value in record.items() if name != "media_haze"}
        for epoch in range(2):
            text = CAPTIONER(row, epoch)
            assert haze_phrases_in(text) == set()
            assert CAPTIONER(dict(row, media_haze=None), epoch) == text
            assert CAPTIONER(dict(row, media_haze=float("nan")), epoch) == text


@pytest.mark.parametrize("grade", [0, 1, 2, 3])
def test_haze_statements_claim_their_grade(grade):
    """A hazy statement asserts its grade's fact; "a clear view" denies every hazy grade; with each record's haze
    grade the claims stay true of the record."""
    haze_facts = {f"media_haze={g}" for g in (1, 2, 3)}
    for record in (dict(r, media_haze=grade) for r in RECORDS if r["is_fundus"] and r["is_retinal_region_readable"]):
        for epoch in range(2):
            parts = CAPTIONER.parts(record, epoch)
            flags = CAPTIONER.claimed_facts(parts)
            asserted = {FACTS[i] for i, flag in enumerate(flags[: len(FACTS)]) if flag} & haze_facts
            denied = {FACTS[i] for i, flag in enumerate(flags[len(FACTS) :]) if flag} & haze_facts
            stated = any(part.concept in HAZE_PHRASES.values() for part in parts)
            assert asserted == ({f"media_haze={grade}"} if grade else set())
            assert denied == (haze_facts if grade == 0 and stated else set())
