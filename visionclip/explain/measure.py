"""Heatmaps measured against the generator's lesion masks: per finding, and per kind of lesion drawn for it.

For each finding question (the held-out evaluation's: the finding's prompt ensemble against its denial's) the
images where the finding was drawn are explained, and each kind of map is scored against the finding's mask (the
union of everything drawn for it) by the pointing game and pixel AUROC (`visionclip.explain.pointing`):

- `similarity`: the dense cosine with the finding's prompts; `contrast`: that minus the cosine with its denial;
- `cam`: the dense dot product with the finding's prompts (positions not normalised);
- `gradcam`: Grad-CAM of the pooled cosine with the finding's prompts;
- `random_similarity`, `random_cam`, `random_gradcam`: the same from a randomly initialised model of the same
  architecture;
- `centre_bias`: the distance from the field of view's centre, reversed (no model at all).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..knowledge import KnowledgeBase
from ..synthetic.generator import FundusGenerator, encode_jpeg
from ..synthetic.writer import split_seed
from ..zeroshot.tasks import ABSENT, PRESENT, finding_tasks
from .pointing import Tally, centre_bias_map

MAP_KINDS = (
    "similarity",
    "contrast",
    "cam",
    "gradcam",
    "random_similarity",
    "random_cam",
    "random_gradcam",
    "centre_bias",
)
SAME_MASK_AS_ANOTHER = {"referable_dr"}  # referable DR's lesions are diabetic retinopathy's


@dataclass(frozen=True)
class FindingQuestion:
    """A finding, the label column whose mask shows it, and the prompt ensembles of its absence and presence."""

    name: str
    column: str
    prompts: dict[str, list[str]]


@dataclass
class Case:
    """One generated photograph (JPEG bytes, as training sees them), its field of view and what was drawn."""

    image: bytes
    record: dict
    field_mask: np.ndarray
    masks: dict[str, np.ndarray]  # per label column, non-empty ones only
    lesions: dict[str, np.ndarray]  # per drawn feature (`column/feature`), non-empty ones only


def finding_questions(knowledge: KnowledgeBase | None = None) -> list[FindingQuestion]:
    questions = []
    for task in finding_tasks(knowledge):
        if task.name in SAME_MASK_AS_ANOTHER:
            continue
        (column,) = task.synthetic_conditions[PRESENT]
        prompts = task.class_prompts()
        questions.append(FindingQuestion(task.name, column, {ABSENT: prompts[ABSENT], PRESENT: prompts[PRESENT]}))
    return questions


def generated_cases(
    count: int, image_size: int = 224, seed: int = 0, split: str = "validation", first: int = 0
) -> Iterator[Case]:
    """`count` images of the embedded dataset's held-out `split` (never trained on) from index `first`, with their
    masks. Past the split's size the generator draws more of the same held-out stream."""
    generator = FundusGenerator(image_size, seed=split_seed(seed, split), encode_png=False)
    for sample in generator.samples(first, first + count):
        masks = {key: mask for key, mask in sample.masks.items() if mask.any()}
        lesions = {tag: mask for tag, mask in sample.lesion_masks.items() if mask.any()}
        yield Case(encode_jpeg(sample.image), sample.record, sample.geometry.field_mask, masks, lesions)


def shows(case: Case, column: str) -> bool:
    """Whether the record has the finding and something of it was drawn in the field."""
    return int(case.record.get(column) or 0) >= 1 and column in case.masks


def explained_maps(
    model, baseline, processor, images: list[bytes], prompts: dict[str, list[str]], upscale: int = 1
) -> dict:
    """`{kind: [map per image]}` for every model-made kind of `MAP_KINDS` (`upscale`: see `explain`); without a
    `baseline` (None), no `random_` kinds."""
    present_only = {PRESENT: prompts[PRESENT]}
    options = {"upscale": upscale} if upscale != 1 else {}
    maps = {}
    sources = [("", model)] + ([("random_", baseline)] if baseline is not None else [])
    for name, source in sources:
        similarity = source.explain(images, processor, text=prompts, method="similarity", **options).heatmaps
        maps[f"{name}similarity"] = [h[1] for h in similarity]
        if not name:
            maps["contrast"] = [h[1] - h[0] for h in similarity]
        cam = source.explain(images, processor, text=present_only, method="cam", **options).heatmaps
        maps[f"{name}cam"] = [h[0] for h in cam]
        gradcam = source.explain(images, processor, text=present_only, method="gradcam", **options).heatmaps
        maps[f"{name}gradcam"] = [h[0] for h in gradcam]
    return maps


def measure(
    model,
    baseline,
    processor,
    cases: list[Case],
    questions: list[FindingQuestion],
    tolerance: int,
    batch_size: int = 32,
    upscale: int = 1,
) -> tuple[dict[str, dict[str, dict]], dict[str, dict[str, dict]]]:
    """`(per_finding, per_lesion)`: `{finding or lesion tag: {map kind: Tally.summary()}}` plus the finding's
    mean mask share of the field under `"area"`; `baseline` None leaves out the `random_` kinds."""
    findings: dict[str, dict[str, Tally]] = defaultdict(lambda: defaultdict(Tally))
    lesions: dict[str, dict[str, Tally]] = defaultdict(lambda: defaultdict(Tally))
    areas: dict[str, list[float]] = defaultdict(list)
    for question in questions:
        chosen = [case for case in cases if shows(case, question.column)]
        for start in range(0, len(chosen), batch_size):
            batch = chosen[start : start + batch_size]
            images = [case.image for case in batch]
            maps = explained_maps(model, baseline, processor, images, question.prompts, upscale)
            maps["centre_bias"] = [centre_bias_map(case.field_mask) for case in batch]
            for index, case in enumerate(batch):
                mask = case.masks[question.column]
                areas[question.name].append(float(mask[case.field_mask].mean()))
                tagged = {t: m for t, m in case.lesions.items() if t.startswith(question.column + "/")}
                for kind, kind_maps in maps.items():
                    heatmap = kind_maps[index]
                    findings[question.name][kind].add(heatmap, mask, case.field_mask, tolerance)
                    for tag, lesion in tagged.items():
                        lesions[tag][kind].add(heatmap, lesion, case.field_mask, tolerance)
    per_finding = {
        name: {"area": float(np.mean(areas[name])), **{kind: tally.summary() for kind, tally in kinds.items()}}
        for name, kinds in findings.items()
    }
    per_lesion = {tag: {kind: tally.summary() for kind, tally in kinds.items()} for tag, kinds in lesions.items()}
    return per_finding, per_lesion
