"""Paired comparison of two downstream runs on the same test items, with evaluation/paired.py's statistics.

Two encoders scored on the same 156 test images differ by a mean of small per-image differences;
whether one is really better is answered item by item: mean difference with a seeded bootstrap 95 %
interval, items better / worse / equal, Wilcoxon signed-rank p, and a verdict that says better or
worse only when the interval excludes zero (:func:`ultrasam_training.evaluation.paired.compare_values`).

Per-item values (``results/predictions/<set>.csv`` of each run):

* ``correct``: 1 when the predicted class is right (classification, prompted);
* ``true_probability``: the probability given to the true class (a finer signal than correctness);
* ``lesion_iou``: segmentation, the best IoU of a confident detection with each GT lesion.

:func:`lesion_auroc_against_image` answers the prompted benchmark's other question — is a lesion's class
from its prompt better than the image-level classifier's on the same lesions? — on AUROC, paired.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ultrasam_training.evaluation.errors import EvaluationError
from ultrasam_training.downstream.metrics import Estimate
from ultrasam_training.downstream.metrics import bootstrap as metrics_bootstrap
from ultrasam_training.evaluation.paired import PairedResult, compare_values, markdown_table

ITEM_METRICS = ("correct", "true_probability", "lesion_iou")


def _prediction_rows(run_dir: str | Path, set_name: str) -> tuple[Path, list[dict[str, str]]]:
    """``results/predictions/<set>.csv`` of a run's work dir (or of a results folder given directly)."""
    path = Path(run_dir) / "results" / "predictions" / f"{set_name}.csv"
    if not path.is_file():
        path = Path(run_dir) / "predictions" / f"{set_name}.csv"
    if not path.is_file():
        raise EvaluationError(f"{run_dir} has no predictions for set {set_name!r} (run `ultrasam downstream` first)")
    with open(path, newline="") as handle:
        return path, list(csv.DictReader(handle))


def read_items(run_dir: str | Path, set_name: str, metric: str) -> dict[tuple[str, str], float]:
    """``{(key, ""): value}`` of one run's per-item predictions (the key shape compare_values sorts)."""
    path, rows = _prediction_rows(run_dir, set_name)
    if rows and metric not in rows[0]:
        raise EvaluationError(
            f"{path} has no {metric!r} column; it offers " + ", ".join(c for c in rows[0] if c in ITEM_METRICS)
        )
    return {(row["key"], ""): float(row[metric]) for row in rows}


def compare_runs(
    base_dir: str | Path,
    new_dir: str | Path,
    set_name: str = "test",
    metric: str = "correct",
    bootstrap: int = 10_000,
    seed: int = 0,
) -> PairedResult:
    """Paired statistics of ``new - base`` on the items both runs scored (they must be the same items)."""
    if metric not in ITEM_METRICS:
        raise EvaluationError(f"unknown metric {metric!r}; choose from {', '.join(ITEM_METRICS)}")
    stats = compare_values(
        read_items(base_dir, set_name, metric),
        read_items(new_dir, set_name, metric),
        metric=metric,
        bootstrap=bootstrap,
        seed=seed,
    )
    return PairedResult(set_name, "-", Path(base_dir).resolve().name, Path(new_dir).resolve().name, metric, **stats)


@dataclass(frozen=True)
class LesionVsImage:
    """Benign-vs-malignant AUROC on the same lesions from a prompted run and from an image-level run.

    The image-level score of a lesion is its image's ``p_malignant / (p_benign + p_malignant)`` (a
    3-class classifier's "normal" mass is left out: every lesion image is benign or malignant).
    Intervals resample images, not lesions (lesions of one image stay together), with the same draws
    for both runs, so ``difference`` is a paired interval.
    """

    lesions: int
    images: int
    prompted: Estimate
    image_level: Estimate
    difference: Estimate

    @property
    def verdict(self) -> str:
        if self.difference.low > 0:
            return "prompted better"
        if self.difference.high < 0:
            return "image-level better"
        return "tie"

    def markdown(self, prompted_name: str, image_name: str) -> str:
        return (
            "| lesions (images) | prompted AUROC | image-level AUROC | difference | verdict |\n"
            "|---|---|---|---|---|\n"
            f"| {self.lesions} ({self.images}) | {self.prompted.text()} ({prompted_name}) | "
            f"{self.image_level.text()} ({image_name}) | {self.difference.text(3)} | {self.verdict} |\n"
        )


def _rows(run_dir: str | Path, set_name: str) -> list[dict[str, str]]:
    """The per-item rows of a run with class probabilities (prompted or classification)."""
    path, rows = _prediction_rows(run_dir, set_name)
    missing = {"key", "label", "p_benign", "p_malignant"} - set(rows[0] if rows else ())
    if missing:
        raise EvaluationError(f"{path} lacks the columns {sorted(missing)}")
    return rows


def lesion_auroc_against_image(
    prompted_dir: str | Path,
    image_dir: str | Path,
    prompted_set: str = "test_box",
    image_set: str = "test",
    bootstrap: int = 10_000,
    seed: int = 0,
) -> LesionVsImage:
    """AUROC (malignant positive) of the prompted run's lesions and of the image-level run on their images."""
    from ultrasam_training.downstream.metrics import binary_auroc

    images = {row["key"]: row for row in _rows(image_dir, image_set)}
    lesions = [row for row in _rows(prompted_dir, prompted_set) if row["label"] in ("benign", "malignant")]
    owners = [row["key"].split("|")[0] for row in lesions]
    absent = sorted({owner for owner in owners if owner not in images})
    if absent:
        raise EvaluationError(f"{len(absent)} lesion images are not in {image_dir}'s {image_set} set, e.g. {absent[0]}")
    if not lesions:
        raise EvaluationError(f"{prompted_dir}'s {prompted_set} set has no benign or malignant lesion")
    malignant = np.array([row["label"] == "malignant" for row in lesions])
    prompted = np.array([float(row["p_malignant"]) for row in lesions])
    image_rows = [images[owner] for owner in owners]
    image_level = np.array(
        [float(r["p_malignant"]) / max(float(r["p_benign"]) + float(r["p_malignant"]), 1e-12) for r in image_rows]
    )
    names = sorted(set(owners))
    members = [np.flatnonzero(np.array(owners) == name) for name in names]

    def draw(indices: np.ndarray) -> np.ndarray:
        return np.concatenate([members[i] for i in indices])

    def statistic(scores: np.ndarray) -> Callable[[np.ndarray], float]:
        return lambda indices: binary_auroc(malignant[draw(indices)], scores[draw(indices)])

    def gap(indices: np.ndarray) -> float:
        chosen = draw(indices)
        return binary_auroc(malignant[chosen], prompted[chosen]) - binary_auroc(malignant[chosen], image_level[chosen])

    n = len(names)
    return LesionVsImage(
        lesions=len(lesions),
        images=n,
        prompted=metrics_bootstrap(statistic(prompted), n, bootstrap, seed),
        image_level=metrics_bootstrap(statistic(image_level), n, bootstrap, seed),
        difference=metrics_bootstrap(gap, n, bootstrap, seed),
    )


__all__ = [
    "ITEM_METRICS",
    "LesionVsImage",
    "compare_runs",
    "lesion_auroc_against_image",
    "markdown_table",
    "read_items",
]
