"""Paired comparison of two downstream runs on the same test items, with evaluation/paired.py's statistics.

Two encoders scored on the same 156 test images differ by a mean of small per-image differences;
whether one is really better is answered item by item: mean difference with a seeded bootstrap 95 %
interval, items better / worse / equal, Wilcoxon signed-rank p, and a verdict that says better or
worse only when the interval excludes zero (:func:`ultrasam_training.evaluation.paired.compare_values`).

Per-item values (``results/predictions/<set>.csv`` of each run):

* ``correct``: 1 when the predicted class is right (classification, prompted);
* ``true_probability``: the probability given to the true class (a finer signal than correctness);
* ``lesion_iou``: segmentation, the best IoU of a confident detection with each GT lesion.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ultrasam_training.evaluation.errors import EvaluationError
from ultrasam_training.evaluation.paired import PairedResult, compare_values, markdown_table

ITEM_METRICS = ("correct", "true_probability", "lesion_iou")


def read_items(run_dir: str | Path, set_name: str, metric: str) -> dict[tuple[str, str], float]:
    """``{(key, ""): value}`` of one run's per-item predictions (the key shape compare_values sorts)."""
    path = Path(run_dir) / "results" / "predictions" / f"{set_name}.csv"
    if not path.is_file():
        path = Path(run_dir) / "predictions" / f"{set_name}.csv"  # a results folder given directly
    if not path.is_file():
        raise EvaluationError(f"{run_dir} has no predictions for set {set_name!r} (run `ultrasam downstream` first)")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
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


__all__ = ["ITEM_METRICS", "compare_runs", "markdown_table", "read_items"]
