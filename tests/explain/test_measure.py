"""The measurement against generated lesion masks, end to end on a few images with the tiny model."""

from __future__ import annotations

import numpy as np

from visionclip.explain.measure import MAP_KINDS, explained_maps, finding_questions, generated_cases, measure, shows
from visionclip.zeroshot.runner import random_baseline


def test_questions_cover_every_finding_column_once_with_both_ensembles():
    questions = finding_questions()
    columns = [question.column for question in questions]
    assert len(columns) == len(set(columns)) and "dr_grade" in columns and "is_gc" in columns
    assert all(set(q.prompts) == {"absent", "present"} and all(q.prompts.values()) for q in questions)


def test_cases_are_the_held_out_images_with_their_drawn_masks():
    cases = list(generated_cases(6, image_size=96))
    assert len(cases) == 6 and cases[0].image[:2] == b"\xff\xd8"  # JPEG, as the embedded dataset stores them
    for case in cases:
        assert case.field_mask.shape == (96, 96)
        assert all(mask.any() and mask.shape == (96, 96) for mask in case.masks.values())


def test_cases_from_a_later_index_continue_the_same_held_out_stream():
    first_five = list(generated_cases(5, image_size=96))
    later = list(generated_cases(2, image_size=96, first=3))
    assert [case.image for case in later] == [case.image for case in first_five[3:]]
    assert later[0].record == first_five[3].record


def test_measure_scores_every_map_kind_on_the_images_that_show_each_finding(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    cases = list(generated_cases(24, image_size=96))
    questions = [q for q in finding_questions() if any(shows(case, q.column) for case in cases)][:2]
    per_finding, per_lesion = measure(model, random_baseline(model), processor, cases, questions, tolerance=2)
    assert set(per_finding) == {q.name for q in questions}
    for question in questions:
        row = per_finding[question.name]
        assert set(row) == {"area", *MAP_KINDS}
        shown = sum(shows(case, question.column) for case in cases)
        assert all(row[kind]["images"] == shown for kind in MAP_KINDS)
        assert 0 < row["area"] < 1 and all(0 <= row[kind]["pointing"] <= 1 for kind in MAP_KINDS)
    assert per_lesion and all("/" in tag for tag in per_lesion)
    assert np.isfinite([row["pixel_auroc"] or 0 for rows in per_lesion.values() for row in rows.values()]).all()


def test_explained_maps_from_an_enlarged_image_cover_the_image_as_the_native_ones(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    cases = list(generated_cases(2, image_size=96))
    question = finding_questions()[0]
    images = [case.image for case in cases]
    native = explained_maps(model, random_baseline(model), processor, images, question.prompts)
    finer = explained_maps(model, random_baseline(model), processor, images, question.prompts, upscale=2)
    assert set(finer) == set(native) == set(MAP_KINDS) - {"centre_bias"}
    for kind in native:
        assert [m.shape for m in finer[kind]] == [m.shape for m in native[kind]] == [(96, 96)] * 2
        assert not np.allclose(np.nan_to_num(finer[kind][0]), np.nan_to_num(native[kind][0]))


def test_measure_without_a_baseline_leaves_out_only_the_random_kinds(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    cases = list(generated_cases(12, image_size=96))
    question = next(q for q in finding_questions() if any(shows(case, q.column) for case in cases))
    per_finding, _ = measure(model, None, processor, cases, [question], tolerance=2)
    kinds = set(per_finding[question.name]) - {"area"}
    assert kinds == {kind for kind in MAP_KINDS if not kind.startswith("random_")}
