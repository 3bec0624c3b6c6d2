"""Linear probes on frozen image embeddings: logistic regression trained on a few-shot split, k shots per class,
or leave-one-fold-out cross-validation (CLIP_benchmark / FLAIR protocol)."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression


def fit_predict(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, num_classes: int, c: float = 1.0
) -> np.ndarray:
    """Class probabilities `(n_test, num_classes)` from an L2-regularised, class-balanced logistic regression."""
    present = np.unique(train_y)
    if len(present) < 2:
        raise ValueError(f"A linear probe needs at least two classes in its training images, got {present.tolist()}")
    model = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
    model.fit(train_x, train_y)
    probs = np.zeros((len(test_x), num_classes))
    probs[:, model.classes_] = model.predict_proba(test_x)
    return probs


def k_shot_indices(labels: np.ndarray, candidates: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """`shots` random candidates per class (fewer when a class has fewer; none without candidates)."""
    if len(candidates) == 0:
        return np.array([], dtype=int)
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(candidates[labels[candidates] == c])[:shots] for c in np.unique(labels[candidates])]
    return np.sort(np.concatenate(chosen))


def cross_validated(x: np.ndarray, y: np.ndarray, folds: np.ndarray, num_classes: int, c: float = 1.0) -> np.ndarray:
    """Out-of-fold probabilities: each fold is scored by a probe trained on the other folds."""
    probs = np.zeros((len(x), num_classes))
    for fold in np.unique(folds):
        test = folds == fold
        probs[test] = fit_predict(x[~test], y[~test], x[test], num_classes, c)
    return probs
