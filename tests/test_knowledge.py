from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from visionclip.knowledge import KNOWLEDGE_BASE_PATH, load_knowledge_base, parse_knowledge_base
from visionclip.schema import COLUMNS_BY_NAME, FINDING_COLUMNS
from visionclip.zeroshot.tasks import recommended_tasks

RECOMMENDED = {"dr_grading", "referable_dr", "glaucoma", "amd", "pathologic_myopia", "normal_vs_abnormal"}


def test_recommended_tasks_are_present_with_prompt_ensembles():
    tasks = recommended_tasks(load_knowledge_base())
    assert set(tasks) >= RECOMMENDED
    assert tasks["dr_grading"].ordinal and len(tasks["dr_grading"].labels) == 5
    for name, task in tasks.items():
        assert len(task.labels) == len(task.prompts) >= 2, name
        for prompts in task.prompts:
            assert len(prompts) >= 3 and len(set(prompts)) == len(prompts)
        flat = [p for prompts in task.prompts for p in prompts]
        assert len(set(flat)) == len(flat), f"{name}: a prompt is shared by two classes"


def test_every_finding_column_has_a_concept_with_negatives():
    knowledge = load_knowledge_base()
    for column in FINDING_COLUMNS:
        concepts = knowledge.concepts_for_column(column)
        assert concepts, f"no concept describes {column}"
        assert all(c.absent for c in concepts), column
    grades = sorted(c.grade for c in knowledge.concepts_for_column("dr_grade"))
    assert grades == [0, 1, 2, 3, 4]
    assert all(c.column in COLUMNS_BY_NAME for c in knowledge.concepts.values() if c.column)


def test_templates_wrap_every_phrase():
    knowledge = load_knowledge_base()
    prompts = knowledge.class_prompts(["glaucoma"])
    assert len(prompts) == len(knowledge.prompt_templates) * len(knowledge.concepts["glaucoma"].phrases)
    assert "A fundus photograph of an enlarged optic cup." in prompts
    assert knowledge.free_form_prompts("cataract")[0] == "A fundus photograph of cataract."


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda kb: kb["tasks"]["amd"]["classes"].update({"x": ["nonexistent"]}), "unknown concept"),
        (lambda kb: kb["concepts"]["amd"].update({"column": "is_bogus"}), "not a SynFundus-1M column"),
        (lambda kb: kb["prompt_templates"].append("no placeholder"), "exactly once"),
        (lambda kb: kb["tasks"]["amd"]["classes"].update({"x": ["normal:absent"]}), "no absent phrases"),
        (lambda kb: kb["concepts"]["amd"].update({"colour": "red"}), "unknown keys"),
    ],
)
def test_invalid_knowledge_base_is_rejected(edit, message):
    raw = yaml.safe_load(Path(KNOWLEDGE_BASE_PATH).read_text())
    edit(raw)
    with pytest.raises(ValueError, match=message):
        recommended_tasks(parse_knowledge_base(raw, Path("kb.yaml")))
