"""Paired comparison of two evaluations, instance by instance.

Two models scored on the same GT instances differ by a mean of small per-instance differences;
a difference of 0.001 in mean Dice on 134 lesions says nothing by itself. Pairing the instances
gives the honest answer: the mean difference with a seeded bootstrap 95 % interval, how many
instances got better or worse, and the Wilcoxon signed-rank p-value.

Reads the ``instances/<dataset>/<model>__<prompt>__<refine>.csv`` files that ``ultrasam evaluate``
writes; instances are matched by (image_id, annotation_id).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ultrasam_training.evaluation.errors import EvaluationError

METRICS = ("dice", "iou", "noc85", "noc90")
LOWER_IS_BETTER = {"noc85", "noc90"}


@dataclass(frozen=True)
class Run:
    """One per-instance CSV: which dataset, model, prompt and refinement it scores."""

    dataset: str
    model: str
    prompt: str
    refine: str
    path: Path


@dataclass(frozen=True)
class PairedResult:
    dataset: str
    prompt: str
    base: str
    new: str
    metric: str
    n: int
    mean_base: float
    mean_new: float
    mean_difference: float  # new - base
    ci_low: float
    ci_high: float
    better: int  # instances where new is better (by the metric's direction)
    worse: int
    equal: int
    p_value: float

    @property
    def verdict(self) -> str:
        """``better``/``worse`` only when the 95 % interval excludes zero, else ``tie``."""
        sign = -1.0 if self.metric in LOWER_IS_BETTER else 1.0
        low, high = sorted((sign * self.ci_low, sign * self.ci_high))
        return "better" if low > 0 else "worse" if high < 0 else "tie"


def find_runs(results_dir: str | Path) -> list[Run]:
    """Every per-instance CSV of a results folder written by ``ultrasam evaluate``."""
    root = Path(results_dir) / "instances"
    if not root.is_dir():
        raise EvaluationError(f"{results_dir} is not an `ultrasam evaluate` results folder (no instances/ in it)")
    runs = []
    for path in sorted(root.glob("*/*.csv")):
        parts = path.stem.split("__")
        if len(parts) == 3:
            runs.append(Run(path.parent.name, parts[0], parts[1], parts[2], path))
    if not runs:
        raise EvaluationError(f"{root} holds no per-instance CSV files")
    return runs


def read_instances(path: Path, metric: str) -> dict[tuple[str, str], float]:
    """(image_id, annotation_id) -> metric value of one per-instance CSV."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and metric not in rows[0]:
        raise EvaluationError(f"{path} has no {metric!r} column (run `ultrasam evaluate` with --clicks for NoC)")
    return {(row["image_id"], row["annotation_id"]): float(row[metric]) for row in rows}


def compare_values(base: dict, new: dict, *, metric: str, bootstrap: int = 10_000, seed: int = 0) -> dict:
    """Paired statistics of ``new - base`` over the instances both score (they must be the same)."""
    if set(base) != set(new):
        only_base, only_new = len(set(base) - set(new)), len(set(new) - set(base))
        raise EvaluationError(
            f"the two evaluations score different instances ({only_base} only in the first, "
            f"{only_new} only in the second): compare results of the same data"
        )
    keys = sorted(base)
    base_values = np.array([base[k] for k in keys], dtype=float)
    new_values = np.array([new[k] for k in keys], dtype=float)
    difference = new_values - base_values
    n = len(difference)
    if n == 0:
        raise EvaluationError("no instances to compare")
    rng = np.random.default_rng(seed)
    means = difference[rng.integers(0, n, size=(bootstrap, n))].mean(axis=1)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    return dict(
        n=n,
        mean_base=float(base_values.mean()),
        mean_new=float(new_values.mean()),
        mean_difference=float(difference.mean()),
        ci_low=float(np.percentile(means, 2.5)),
        ci_high=float(np.percentile(means, 97.5)),
        better=int(np.sum(sign * difference > 0)),
        worse=int(np.sum(sign * difference < 0)),
        equal=int(np.sum(difference == 0)),
        p_value=_wilcoxon(difference),
    )


def _wilcoxon(difference: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; 1.0 when every difference is zero."""
    from scipy.stats import wilcoxon

    if not np.any(difference != 0):
        return 1.0
    return float(wilcoxon(difference).pvalue)


def select(runs: list[Run], model: str | None, refine: str | None, label: str) -> dict[tuple[str, str], Run]:
    """One run per (dataset, prompt), or an error that lists what the folder offers."""
    chosen = [r for r in runs if (model is None or r.model == model) and (refine is None or r.refine == refine)]
    by_key: dict[tuple[str, str], list[Run]] = {}
    for run in chosen:
        by_key.setdefault((run.dataset, run.prompt), []).append(run)
    ambiguous = {k: v for k, v in by_key.items() if len(v) > 1}
    if ambiguous or not by_key:
        offered = sorted({f"{r.model} (refine {r.refine})" for r in runs})
        problem = "several runs per dataset and prompt" if ambiguous else "nothing matches"
        raise EvaluationError(
            f"{label}: {problem}; choose with --{label}-model/--{label}-refine among: " + ", ".join(offered)
        )
    return {k: v[0] for k, v in by_key.items()}


def compare_results(
    base_dir: str | Path,
    new_dir: str | Path,
    *,
    metric: str = "dice",
    base_model: str | None = None,
    new_model: str | None = None,
    base_refine: str | None = None,
    new_refine: str | None = None,
    bootstrap: int = 10_000,
    seed: int = 0,
) -> list[PairedResult]:
    """Pair every (dataset, prompt) that both folders scored."""
    if metric not in METRICS:
        raise EvaluationError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    base_runs = select(find_runs(base_dir), base_model, base_refine, "base")
    new_runs = select(find_runs(new_dir), new_model, new_refine, "new")
    shared = sorted(set(base_runs) & set(new_runs))
    if not shared:
        raise EvaluationError(
            f"no dataset and prompt scored in both folders (first: {sorted(base_runs)}, second: {sorted(new_runs)})"
        )
    results = []
    for dataset, prompt in shared:
        base, new = base_runs[dataset, prompt], new_runs[dataset, prompt]
        stats = compare_values(
            read_instances(base.path, metric),
            read_instances(new.path, metric),
            metric=metric,
            bootstrap=bootstrap,
            seed=seed,
        )
        results.append(PairedResult(dataset, prompt, _label(base_dir, base), _label(new_dir, new), metric, **stats))
    return results


def _label(results_dir: str | Path, run: Run) -> str:
    """``folder: model (refine)``: two folders often hold a model of the same name."""
    return f"{Path(results_dir).resolve().name}: {run.model} ({run.refine})"


def markdown_table(results: list[PairedResult]) -> str:
    """One row per dataset and prompt."""
    lines = [
        "| dataset | prompt | base | new | n | base mean | new mean | difference [95% CI] "
        "| better / worse / equal | Wilcoxon p | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        p_value = "n/a" if math.isnan(r.p_value) else f"{r.p_value:.2g}"
        lines.append(
            f"| {r.dataset} | {r.prompt} | {r.base} | {r.new} | {r.n} | {r.mean_base:.4f} "
            f"| {r.mean_new:.4f} | {r.mean_difference:+.4f} [{r.ci_low:+.4f}, {r.ci_high:+.4f}] "
            f"| {r.better} / {r.worse} / {r.equal} | {p_value} | {r.verdict} |"
        )
    return "\n".join(lines) + "\n"
