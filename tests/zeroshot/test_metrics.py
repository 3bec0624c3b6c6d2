"""The `evaluate` metric module against hand-computed values."""

from __future__ import annotations

import evaluate
import pytest

from visionclip.resources import FUNDUS_METRIC, data_path


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(str(data_path(FUNDUS_METRIC)))  # a local path: no Hub access needed


def test_hand_computed_three_class_ordinal_case(metric):
    # true [0,1,2,2], predicted [0,2,2,1]: recalls 1, 0, 1/2; F1s 1, 0, 1/2
    result = metric.compute(predictions=[0, 2, 2, 1], references=[0, 1, 2, 2], ordinal=True, bootstrap_samples=0)
    assert result["accuracy"] == pytest.approx(0.5)
    assert result["balanced_accuracy"] == pytest.approx(0.5)
    assert result["macro_f1"] == pytest.approx(0.5)
    # quadratic weights (i-j)^2/4: observed disagreement 0.5, expected 1.375 -> 1 - 0.5/1.375 = 7/11
    assert result["quadratic_kappa"] == pytest.approx(7 / 11)
    assert result["confusion_matrix"] == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    assert result["auroc"] is None and "accuracy_ci" not in result


def test_binary_auroc_and_per_class_table(metric):
    result = metric.compute(
        predictions=[0, 0, 0, 1],
        references=[0, 0, 1, 1],
        prediction_scores=[[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]],
        bootstrap_samples=0,
    )
    assert result["auroc"] == pytest.approx(0.75)  # scores 0.1, 0.4 vs 0.35, 0.8: 3 of 4 pairs ordered
    assert result["per_class"][1] == {
        "class": 1,
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "support": 2,
        "auroc": pytest.approx(0.75),
    }
    assert "quadratic_kappa" not in result


def test_perfect_agreement_kappa_and_known_disagreement(metric):
    perfect = metric.compute(
        predictions=[0, 1, 2, 3, 4], references=[0, 1, 2, 3, 4], ordinal=True, bootstrap_samples=0
    )
    assert perfect["quadratic_kappa"] == pytest.approx(1.0)
    reversed_ = metric.compute(
        predictions=[4, 3, 2, 1, 0], references=[0, 1, 2, 3, 4], ordinal=True, bootstrap_samples=0
    )
    assert reversed_["quadratic_kappa"] == pytest.approx(-1.0)


def test_bootstrap_intervals_contain_the_estimate_and_are_seeded(metric):
    predictions = [0, 1, 1, 0, 1, 0, 1, 1, 0, 0] * 3
    references = [0, 1, 0, 0, 1, 1, 1, 1, 0, 0] * 3
    first = metric.compute(predictions=predictions, references=references, bootstrap_samples=300, seed=1)
    again = metric.compute(predictions=predictions, references=references, bootstrap_samples=300, seed=1)
    low, high = first["accuracy_ci"]
    assert low < first["accuracy"] < high and low > 0.5 and high <= 1.0
    assert first["accuracy_ci"] == again["accuracy_ci"]


def test_bad_inputs_are_named(metric):
    with pytest.raises(ValueError, match="outside num_classes"):
        metric.compute(predictions=[0, 3], references=[0, 1], num_classes=2, bootstrap_samples=0)


def test_grouped_bootstrap_resamples_patients_not_images(metric):
    # each patient contributes four identical images: resampling patients gives exactly the intervals of one image
    # per patient, while resampling images treats the copies as independent evidence and narrows them
    predictions = [0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1, 0]
    references = [0, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1]
    scores = [[0.7, 0.3], [0.2, 0.8], [0.4, 0.6], [0.9, 0.1], [0.3, 0.7], [0.6, 0.4]] * 2
    per_patient = metric.compute(
        predictions=predictions, references=references, prediction_scores=scores, bootstrap_samples=200, seed=3
    )
    copies = {
        "predictions": [p for p in predictions for _ in range(4)],
        "references": [r for r in references for _ in range(4)],
        "prediction_scores": [s for s in scores for _ in range(4)],
    }
    patients = [f"patient-{i}" for i in range(len(references)) for _ in range(4)]
    grouped = metric.compute(**copies, groups=patients, bootstrap_samples=200, seed=3)
    naive = metric.compute(**copies, bootstrap_samples=200, seed=3)
    for name in ("accuracy_ci", "balanced_accuracy_ci", "auroc_ci"):
        assert grouped[name] == pytest.approx(per_patient[name])
        assert naive[name][1] - naive[name][0] < grouped[name][1] - grouped[name][0]
    assert grouped["num_groups"] == 12 and grouped["num_samples"] == 48
    with pytest.raises(ValueError, match="groups has 3 entries for 48 samples"):
        metric.compute(**copies, groups=patients[:3], bootstrap_samples=0)
