"""Result files: summary and per-dataset tables (Markdown, CSV, JSON), per-instance CSVs,
COCO detections and plots, all written atomically and never over an existing file unless asked.

Layout under the results folder::

    summary.md  summary.csv  summary.json
    tables/<dataset>.md  tables/<dataset>.csv
    instances/<dataset>/<model>__<prompt>__<refine>.csv
    detections/<dataset>/<model>__<prompt>__<refine>.json   (COCO results, re-scorable with pycocotools)
    plots/<dataset>__dice_hist.png  plots/<dataset>__iou_vs_clicks.png (with clicks)
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Sequence

from ultrasam.atomic import atomic_write, refuse_existing, write_text_atomic
from ultrasam_training.evaluation.runner import EvaluationResult, refine_label

#: a spreadsheet reads a cell starting with one of these as a formula (CSV injection, OWASP)
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

BASE_COLUMNS = (
    "dataset",
    "prompt",
    "model",
    "refine",
    "n",
    "mAP",
    "mAP@50",
    "mean Dice",
    "mean IoU",
    "NoC@85",
    "NoC@90",
)


def safe_name(text: str) -> str:
    """A file-name-safe form of a dataset or model name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "unnamed"


def run_stem(model: str, prompt: str, refine: bool | None) -> str:
    return f"{safe_name(model)}__{prompt}__{refine_label(refine).replace('-', 'none')}"


def journal_path(out_dir: str | Path, dataset: str, model: str, refine: bool | None) -> Path:
    """Where one (dataset, model) run journals its per-instance records as they are produced."""
    return Path(out_dir) / "records" / f"{safe_name(dataset)}__{run_stem(model, 'all', refine)}.jsonl"


def planned_paths(out_dir: str | Path, runs: Iterable[tuple[str, str, str, bool | None]], clicks: bool) -> list[Path]:
    """Every file a report of ``runs`` = (dataset, model, prompt, refine) writes; check before running."""
    out = Path(out_dir)
    paths = [out / "summary.md", out / "summary.csv", out / "summary.json"]
    datasets: "OrderedDict[str, None]" = OrderedDict()
    for dataset, model, prompt, refine in runs:
        datasets[dataset] = None
        stem = run_stem(model, prompt, refine)
        paths += [
            out / "instances" / safe_name(dataset) / f"{stem}.csv",
            out / "detections" / safe_name(dataset) / f"{stem}.json",
        ]
    for dataset in datasets:
        name = safe_name(dataset)
        paths += [
            out / "tables" / f"{name}.md",
            out / "tables" / f"{name}.csv",
            out / "plots" / f"{name}__dice_hist.png",
        ]
        if clicks:
            paths.append(out / "plots" / f"{name}__iou_vs_clicks.png")
    return paths


def refuse_existing_outputs(paths: Iterable[Path]) -> None:
    """Raise ``OutputExistsError`` naming the first existing path (and how many more exist)."""
    existing = [p for p in paths if p.exists()]
    if existing:
        refuse_existing(existing[0])


def click_columns(results: Sequence[EvaluationResult]) -> list[str]:
    count = max((sum(1 for k in r.summary if k.startswith("IoU@")) for r in results), default=0)
    return [f"IoU@{k}" for k in range(1, count + 1)]


def _format(value: Any, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}" if column.startswith("NoC") else f"{value:.3f}"
    return str(value)


def markdown_table(results: Sequence[EvaluationResult]) -> str:
    columns = list(BASE_COLUMNS) + click_columns(results)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for result in results:
        lines.append("| " + " | ".join(_format(result.summary.get(c), c) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def neutralise_cell(value: Any) -> Any:
    """``value`` safe to open in a spreadsheet: text starting with a formula trigger gets a leading ``'``.

    File names and dataset names come from the COCO file, so ``=HYPERLINK(...)`` would otherwise
    run when the CSV is opened (OWASP CSV injection). Numbers (also as text, e.g. ``-0.5``) and the
    tables' lone ``-`` (no refine setting) are no formula and stay as they are.
    """
    if not isinstance(value, str) or not value.startswith(FORMULA_TRIGGERS):
        return value
    if value == "-" or _is_number_text(value):
        return value
    return "'" + value


def _csv_line(cells: Sequence[Any]) -> str:
    """One ``\n``-terminated CSV line; a cell holding a CR is quoted (with a plain ``\n`` terminator the
    csv module would leave it bare, and readers would split the row there)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([neutralise_cell(cell) for cell in cells])
    return buffer.getvalue()[:-2] + "\n"


def csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """CSV of ``rows`` (None -> empty cell), every cell and header neutralised (see ``neutralise_cell``)."""
    lines = [_csv_line(columns)]
    lines += [_csv_line(["" if row.get(c) is None else row.get(c) for c in columns]) for row in rows]
    return "".join(lines)


def summary_csv(results: Sequence[EvaluationResult]) -> str:
    return csv_text([r.summary for r in results], list(BASE_COLUMNS) + click_columns(results))


def instances_csv(result: EvaluationResult) -> str:
    rows = [record.to_row() for record in result.records]
    columns = list(rows[0]) if rows else ["image_id", "annotation_id"]
    return csv_text(rows, columns)


def _by_dataset(results: Sequence[EvaluationResult]) -> "OrderedDict[str, list[EvaluationResult]]":
    groups: "OrderedDict[str, list[EvaluationResult]]" = OrderedDict()
    for result in results:
        groups.setdefault(result.dataset, []).append(result)
    return groups


def _run_label(result: EvaluationResult) -> str:
    refine = "" if result.refine is None else (" +refine" if result.refine else "")
    return f"{result.model}{refine}"


def _save_figure(figure, path: Path, overwrite: bool) -> Path:
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120), overwrite=overwrite)


def plot_dice_histogram(results: Sequence[EvaluationResult], path: Path, overwrite: bool = False) -> Path:
    """Per-instance Dice distribution of every (model, prompt) of one dataset, as step histograms."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.0))
    axes = figure.add_subplot()
    bins = [i / 20 for i in range(21)]
    for result in results:
        axes.hist(
            [r.dice for r in result.records],
            bins=bins,
            histtype="step",
            linewidth=1.5,
            label=f"{_run_label(result)} · {result.prompt} (mean {result.summary['mean Dice']:.3f})",
        )
    axes.set_xlabel("Dice per instance")
    axes.set_ylabel("instances")
    axes.set_xlim(0, 1)
    axes.set_title(f"{results[0].dataset}: Dice per instance")
    # the failures pile up in the bar at Dice 0, at the left: keep the legend clear of it
    axes.legend(fontsize="small", loc="upper center")
    figure.tight_layout()
    return _save_figure(figure, path, overwrite)


def plot_iou_vs_clicks(results: Sequence[EvaluationResult], path: Path, overwrite: bool = False) -> Path:
    """Mean IoU after 1..N simulated clicks, one line per model (click results share all prompts)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.0))
    axes = figure.add_subplot()
    seen = set()
    for result in results:
        label = _run_label(result)
        columns = [c for c in result.summary if c.startswith("IoU@")]
        if not columns or label in seen:
            continue
        seen.add(label)
        clicks = list(range(1, len(columns) + 1))
        axes.plot(clicks, [result.summary[c] for c in columns], marker="o", label=label)
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("clicks")
    axes.set_ylabel("mean IoU")
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.set_title(f"{results[0].dataset}: IoU vs clicks")
    axes.legend(fontsize="small", loc="lower right")
    figure.tight_layout()
    return _save_figure(figure, path, overwrite)


def write_report(results: Sequence[EvaluationResult], out_dir: str | Path, *, overwrite: bool = False) -> list[Path]:
    """Write every result file for ``results`` under ``out_dir``; returns the paths written.

    All target paths are checked first, so without ``overwrite`` nothing is written when any exists.
    """
    if not results:
        return []
    out = Path(out_dir)
    clicks = bool(click_columns(results))
    runs = [(r.dataset, r.model, r.prompt, r.refine) for r in results]
    if not overwrite:
        refuse_existing_outputs(planned_paths(out, runs, clicks))
    written = [
        write_text_atomic(out / "summary.md", _summary_markdown(results), overwrite),
        write_text_atomic(out / "summary.csv", summary_csv(results), overwrite),
        write_text_atomic(out / "summary.json", json.dumps([r.summary for r in results], indent=1) + "\n", overwrite),
    ]
    for result in results:
        stem = run_stem(result.model, result.prompt, result.refine)
        folder = safe_name(result.dataset)
        written.append(write_text_atomic(out / "instances" / folder / f"{stem}.csv", instances_csv(result), overwrite))
        written.append(
            write_text_atomic(
                out / "detections" / folder / f"{stem}.json", json.dumps(result.detections) + "\n", overwrite
            )
        )
    for dataset, group in _by_dataset(results).items():
        name = safe_name(dataset)
        written.append(
            write_text_atomic(out / "tables" / f"{name}.md", f"## {dataset}\n\n" + markdown_table(group), overwrite)
        )
        written.append(write_text_atomic(out / "tables" / f"{name}.csv", summary_csv(group), overwrite))
        written.append(plot_dice_histogram(group, out / "plots" / f"{name}__dice_hist.png", overwrite))
        if clicks:
            written.append(plot_iou_vs_clicks(group, out / "plots" / f"{name}__iou_vs_clicks.png", overwrite))
    return written


def _summary_markdown(results: Sequence[EvaluationResult]) -> str:
    parts = [
        "# Evaluation results\n",
        "Class-agnostic COCO segm mAP (pycocotools, one prediction per GT instance, scored by predicted IoU); "
        "Dice/IoU are per-instance means. Click columns (IoU after k clicks, NoC) come from the click "
        "simulator and do not depend on the prompt column.\n",
    ]
    for dataset, group in _by_dataset(results).items():
        parts.append(f"## {dataset}\n\n" + markdown_table(group))
    return "\n".join(parts)
