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


def plot_curves(scalars_json: str | Path, out_png: str | Path) -> Path:
    """Two panels: every ``loss*`` term (log scale) and the learning rate, against the iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_scalars(scalars_json)
    if not records:
        raise ValueError(f"{scalars_json} holds no training records")
    iterations = [r["iter"] for r in records]
    names = sorted({k for r in records for k in r if k.startswith("loss")})
    figure, (loss_axis, lr_axis) = plt.subplots(2, 1, figsize=(8, 7), sharex=True,
                                                gridspec_kw={"height_ratios": [3, 1]})
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
