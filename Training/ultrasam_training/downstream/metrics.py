"""Classification metrics with seeded bootstrap 95 % intervals (NumPy only).

A test split of 156 images (134 lesions) gives noisy figures: macro-F1 moves by several points
when a handful of images change sides. Every figure is therefore reported with a percentile
bootstrap interval over the test items (resampled with replacement, seeded, so a rerun prints the
same interval), and two runs are compared item by item (:mod:`.paired`), not by their means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from ultrasam_training.train.errors import TrainingError


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``[true, predicted]`` counts."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(labels, int), np.asarray(predicted, int)), 1)
    return matrix


def f1_per_class(matrix: np.ndarray) -> np.ndarray:
    """F1 of each class; a class neither present nor predicted scores 0 (as scikit-learn's zero_division=0)."""
    tp = np.diag(matrix).astype(float)
    denominator = matrix.sum(axis=0) + matrix.sum(axis=1)
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


def macro_f1(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> float:
    return float(f1_per_class(confusion_matrix(labels, predicted, num_classes)).mean())


def accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.asarray(labels) == np.asarray(predicted)))


def binary_auroc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties counting half.

    NaN when one of the two groups is empty.
    """
    positive = np.asarray(positive, bool)
    scores = np.asarray(scores, float)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), float)
    sorted_scores = scores[order]
    # average ranks for ties (1-based)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def macro_auroc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean one-vs-rest AUROC over the classes present; binary problems use the positive (last) class."""
    labels = np.asarray(labels, int)
    probabilities = np.asarray(probabilities, float)
    if probabilities.shape[1] == 2:
        return binary_auroc(labels == 1, probabilities[:, 1])
    values = [binary_auroc(labels == c, probabilities[:, c]) for c in range(probabilities.shape[1])]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def roc_curve(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) at every threshold, from (0, 0) to (1, 1)."""
    positive = np.asarray(positive, bool)
    order = np.argsort(-np.asarray(scores, float), kind="mergesort")
    sorted_scores = np.asarray(scores, float)[order]
    hits = positive[order]
    distinct = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(hits) - 1]
    tps = np.cumsum(hits)[distinct]
    fps = (distinct + 1) - tps
    tpr = np.r_[0.0, tps / max(1, positive.sum())]
    fpr = np.r_[0.0, fps / max(1, (~positive).sum())]
    return fpr, tpr


# --------------------------------------------------------------------------- summaries with intervals
@dataclass(frozen=True)
class Estimate:
    """A metric on the test items and its percentile bootstrap 95 % interval."""

    value: float
    low: float
    high: float
    n: int

    def text(self, digits: int = 3) -> str:
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def bootstrap(statistic: Callable[[np.ndarray], float], n: int, resamples: int = 2000, seed: int = 0) -> Estimate:
    """``statistic(indices)`` on all items and on ``resamples`` seeded resamples of the item indices."""
    if n == 0:
        raise TrainingError("no items to evaluate")
    value = statistic(np.arange(n))
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)], float)
    draws = draws[~np.isnan(draws)]
    if draws.size == 0:
        return Estimate(value, float("nan"), float("nan"), n)
    return Estimate(float(value), float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5)), n)


def classification_summary(
    labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[str], resamples: int = 2000, seed: int = 0
) -> dict[str, Estimate]:
    """Macro-F1, accuracy, AUROC (macro one-vs-rest; binary: the positive class) and per-class F1 with CIs."""
    labels = np.asarray(labels, int)
    probabilities = np.asarray(probabilities, float)
    k = len(classes)
    predicted = probabilities.argmax(axis=1)
    metrics: dict[str, Callable[[np.ndarray], float]] = {
        "macro_f1": lambda i: macro_f1(labels[i], predicted[i], k),
        "accuracy": lambda i: accuracy(labels[i], predicted[i]),
        "auroc": lambda i: macro_auroc(labels[i], probabilities[i]),
    }

    def class_f1(c: int) -> Callable[[np.ndarray], float]:
        return lambda i: float(f1_per_class(confusion_matrix(labels[i], predicted[i], k))[c])

    for c, name in enumerate(classes):
        metrics[f"f1_{name}"] = class_f1(c)
    return {name: bootstrap(fn, len(labels), resamples, seed) for name, fn in metrics.items()}


def point_metrics(labels: np.ndarray, probabilities: np.ndarray, num_classes: int) -> Mapping[str, float]:
    """The same metrics without intervals (validation during training)."""
    predicted = np.asarray(probabilities).argmax(axis=1)
    return {
        "macro_f1": macro_f1(labels, predicted, num_classes),
        "accuracy": accuracy(labels, predicted),
        "auroc": macro_auroc(labels, probabilities),
    }
