"""Tables (Markdown, CSV, JSON) and plots (confusion matrix, ROC) of a downstream run.

Layout of ``<work_dir>/results/``: ``summary.md|csv|json`` (one row per evaluation set, every
figure with its bootstrap 95 % interval and the number of items), ``predictions/<set>.csv`` (one row
per test item, what :mod:`.paired` compares), ``confusion_<set>.png`` and ``roc_<set>.png``.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ultrasam_training.downstream.metrics import Estimate, classification_summary, confusion_matrix, roc_curve

NOTICE = "Research benchmark on a public dataset split, not a diagnosis."


def write_predictions(
    path: Path, keys: Sequence[str], labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[str]
) -> Path:
    """One row per item: key, true class, per-class probability, predicted class, correct (0/1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    predicted = probabilities.argmax(axis=1)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["key", "label", *[f"p_{c}" for c in classes], "predicted", "correct", "true_probability"])
        for key, label, p, guess in zip(keys, labels, probabilities, predicted):
            writer.writerow(
                [key, classes[label], *[f"{v:.6f}" for v in p], classes[guess], int(guess == label), f"{p[label]:.6f}"]
            )
    return path


def plot_confusion(
    path: Path, labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[str], title: str
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = confusion_matrix(labels, probabilities.argmax(axis=1), len(classes))
    fig, ax = plt.subplots(figsize=(1.4 * len(classes) + 2, 1.2 * len(classes) + 1.6))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_roc(
    path: Path,
    labels: np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[str],
    title: str,
    auroc: Estimate | None = None,
) -> Path:
    """One-vs-rest ROC per class; a binary problem shows the positive (last) class only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    shown = [len(classes) - 1] if len(classes) == 2 else range(len(classes))
    for c in shown:
        positive = labels == c
        if positive.all() or not positive.any():
            continue
        fpr, tpr = roc_curve(positive, probabilities[:, c])
        ax.plot(fpr, tpr, label=f"{classes[c]} vs rest" if len(classes) > 2 else classes[c])
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    suffix = f"\nAUROC {auroc.text()}" if auroc is not None else ""
    ax.set_title(title + suffix, fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _cell(estimate: Estimate) -> str:
    return "n/a" if math.isnan(estimate.value) else estimate.text()


def write_classification_report(
    out_dir: str | Path,
    sets: Mapping[str, tuple[Sequence[str], np.ndarray, np.ndarray]],
    classes: Sequence[str],
    title: str,
    cost: Mapping[str, float] | None = None,
    meta: Mapping | None = None,
    resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """Summary tables, per-item predictions and plots for every evaluation set; returns the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {
        "title": title,
        "classes": list(classes),
        "sets": {},
        "cost": dict(cost or {}),
        "meta": dict(meta or {}),
        "bootstrap": {"resamples": resamples, "seed": seed},
        "notice": NOTICE,
    }
    for name, (keys, labels, probabilities) in sets.items():
        labels, probabilities = np.asarray(labels, int), np.asarray(probabilities, float)
        estimates = classification_summary(labels, probabilities, classes, resamples, seed)
        summary["sets"][name] = {k: asdict(v) for k, v in estimates.items()}
        write_predictions(out / "predictions" / f"{name}.csv", keys, labels, probabilities, classes)
        caption = f"{title}: {name} (n={len(labels)})"
        plot_confusion(out / f"confusion_{name}.png", labels, probabilities, classes, caption)
        plot_roc(
            out / f"roc_{name}.png",
            labels,
            probabilities,
            classes,
            f"{title}: {name} (n={len(labels)})",
            estimates["auroc"],
        )
    _write_tables(out, summary, classes)
    return summary


def _write_tables(out: Path, summary: dict, classes: Sequence[str]) -> None:
    columns = ["macro_f1", "accuracy", "auroc", *[f"f1_{c}" for c in classes]]
    lines = [
        f"# {summary['title']}",
        "",
        f"_{NOTICE}_",
        "",
        "| set | n | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    rows = []
    for name, estimates in summary["sets"].items():
        cells = [_cell(Estimate(**estimates[c])) for c in columns]
        n = next(iter(estimates.values()))["n"]
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
        rows.append(
            {
                "set": name,
                "n": n,
                **{c: estimates[c]["value"] for c in columns},
                **{f"{c}_low": estimates[c]["low"] for c in columns},
                **{f"{c}_high": estimates[c]["high"] for c in columns},
            }
        )
    lines += [
        "",
        f"95 % intervals: percentile bootstrap over items, {summary['bootstrap']['resamples']} resamples, "
        f"seed {summary['bootstrap']['seed']}.",
    ]
    if summary["cost"]:
        lines += ["", "| cost | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in summary["cost"].items()]
    if summary["meta"]:
        lines += ["", "| run | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in summary["meta"].items()]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    with open(out / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["set"])
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
