"""Loss and learning-rate curves from mmengine's ``scalars.json`` (one JSON object per log step)."""

from __future__ import annotations

import json
from pathlib import Path

from ultrasam.atomic import atomic_write


def read_scalars(path: str | Path) -> list[dict]:
    """The training records (those with an ``iter`` and an ``lr``) of a LocalVisBackend scalars file."""
    records = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line:
            record = json.loads(line)
            if "iter" in record and "lr" in record:
                records.append(record)
    return records


def read_work_dir_scalars(work_dir: str | Path) -> list[dict]:
    """The training records of every run in ``work_dir``, so a resumed run plots from iteration 1.

    mmengine starts a new ``<timestamp>/vis_data/scalars.json`` at each (re)start. Runs are taken in
    time order; a later run replaces the records of earlier ones from its first iteration on (a
    resume from ``iter_1500`` re-logs what the killed run had logged after 1500).
    """
    merged: list[dict] = []
    for scalars in sorted(Path(work_dir).glob("*/vis_data/scalars.json")):
        records = read_scalars(scalars)
        if records:
            first = min(r["iter"] for r in records)
            merged = [r for r in merged if r["iter"] < first] + records
    return sorted(merged, key=lambda r: r["iter"])


def plot_curves(source: str | Path, out_png: str | Path) -> Path:
    """Two panels: every ``loss*`` term (log scale) and the learning rate, against the iteration.

    ``source`` is one ``scalars.json`` or a work directory (all its runs, resumes joined).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    source = Path(source)
    records = read_work_dir_scalars(source) if source.is_dir() else read_scalars(source)
    if not records:
        raise ValueError(f"{source} holds no training records")
    iterations = [r["iter"] for r in records]
    names = sorted({k for r in records for k in r if k.startswith("loss")})
    figure, (loss_axis, lr_axis) = plt.subplots(
        2, 1, figsize=(8, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    for name in names:
        values = [r.get(name) for r in records]
        points = [(i, v) for i, v in zip(iterations, values) if v is not None and v > 0]
        if points:
            loss_axis.plot(*zip(*points), label=name, linewidth=2.0 if name == "loss" else 1.0)
    loss_axis.set_yscale("log")
    loss_axis.set_ylabel("loss (weighted)")
    loss_axis.legend(fontsize=7, ncol=2)
    loss_axis.grid(True, which="both", alpha=0.3)
    lr_axis.plot(iterations, [r["lr"] for r in records], color="black")
    lr_axis.set_yscale("log")
    lr_axis.set_ylabel("learning rate")
    lr_axis.set_xlabel("iteration")
    lr_axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    out_png = Path(out_png)
    atomic_write(out_png, lambda tmp: figure.savefig(tmp, dpi=110, format="png"), overwrite=True)
    plt.close(figure)
    return out_png
