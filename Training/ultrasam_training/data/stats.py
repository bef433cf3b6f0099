"""Images and instances per dataset and per organ, as a table and a bar plot (matplotlib)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
from ultrasam.atomic import atomic_write, refuse_existing

from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.jsonio import read_json
from ultrasam_training.data.registry import organ_of


@dataclass
class DatasetStats:
    """Counts of one dataset."""

    dataset: str
    organ: str
    images: int
    instances: int
    empty_images: int
    median_area: float  #: median instance area in px (nan without instances)


def compute_stats(cocos: Iterable[Mapping[str, Any]]) -> list[DatasetStats]:
    """Per-dataset counts over any number of COCO dicts (grouped by each image's ``dataset``)."""
    images: dict[str, int] = defaultdict(int)
    areas: dict[str, list[float]] = defaultdict(list)
    with_instances: dict[str, set] = defaultdict(set)
    for index, coco in enumerate(cocos):
        dataset_of = {}
        for image in coco["images"]:
            dataset = str(image.get("dataset", "unknown"))
            dataset_of[image["id"]] = dataset
            images[dataset] += 1
        for annotation in coco["annotations"]:
            dataset = dataset_of.get(annotation["image_id"], "unknown")
            areas[dataset].append(float(annotation.get("area", 0)))
            with_instances[dataset].add((index, annotation["image_id"]))
    return [
        DatasetStats(
            dataset=dataset,
            organ=organ_of(dataset),
            images=images[dataset],
            instances=len(areas[dataset]),
            empty_images=images[dataset] - len(with_instances[dataset]),
            median_area=float(np.median(areas[dataset])) if areas[dataset] else float("nan"),
        )
        for dataset in sorted(images)
    ]


def per_organ(stats: Iterable[DatasetStats]) -> dict[str, tuple[int, int]]:
    """``{organ: (images, instances)}``."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in stats:
        totals[row.organ][0] += row.images
        totals[row.organ][1] += row.instances
    return {organ: (v[0], v[1]) for organ, v in sorted(totals.items())}


def format_stats(stats: list[DatasetStats]) -> str:
    """Plain-text table with a total line."""
    header = f"{'dataset':<32} {'organ':<26} {'images':>8} {'instances':>10} {'empty':>6} {'median area':>12}"
    lines = [header, "-" * len(header)]
    for row in stats:
        lines.append(
            f"{row.dataset:<32} {row.organ:<26} {row.images:>8} {row.instances:>10} {row.empty_images:>6} "
            f"{row.median_area:>12.0f}"
        )
    lines.append(f"{'total':<32} {'':<26} {sum(r.images for r in stats):>8} {sum(r.instances for r in stats):>10}")
    return "\n".join(lines)


def plot_stats(stats: list[DatasetStats], path: str | Path, *, overwrite: bool = False) -> Path:
    """Bar plots of images and instances per dataset and per organ, saved as PNG (no pyplot state)."""
    from matplotlib.figure import Figure

    path = Path(path)
    if path.exists() and not overwrite:
        refuse_existing(path)  # before the plotting work, not only when the file is moved into place
    if not stats:
        raise DatasetError("no datasets to plot")
    organs = per_organ(stats)
    figure = Figure(figsize=(12, 4 + 0.25 * max(len(stats), len(organs))), layout="constrained")
    left, right = figure.subplots(1, 2)
    for axes, labels, image_counts, instance_counts, title in (
        (left, [r.dataset for r in stats], [r.images for r in stats], [r.instances for r in stats], "per dataset"),
        (right, list(organs), [v[0] for v in organs.values()], [v[1] for v in organs.values()], "per organ"),
    ):
        positions = np.arange(len(labels))
        axes.barh(positions - 0.2, image_counts, height=0.4, label="images")
        axes.barh(positions + 0.2, instance_counts, height=0.4, label="instances")
        axes.set_yticks(positions, labels)
        axes.invert_yaxis()
        counts = [c for c in image_counts + instance_counts if c > 0]
        if counts and max(counts) > 100 * min(counts):
            axes.set_xscale("log")  # US-43d spans tens to tens of thousands of images per dataset
        axes.set_xlabel("count")
        axes.set_title(title)
        axes.legend(loc="lower right")
    return atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=100, format="png"), overwrite=overwrite)


def find_coco_files(root: str | Path) -> list[Path]:
    """COCO files to count under ``root``: per-dataset ``*__coco.json`` if any, else every ``*.json``.

    Merged split files repeat the per-dataset images, so they are only used when no per-dataset
    file exists. A file path is returned as is.
    """
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DatasetError(f"not found: {root}")
    per_dataset = sorted(root.rglob("*__coco.json"))
    if per_dataset:
        return per_dataset
    candidates = [p for p in sorted(root.rglob("*.json")) if not p.name.endswith("__report.json")]
    if not candidates:
        raise DatasetError(f"no COCO .json files under {root}")
    return candidates


def stats_of_root(root: str | Path) -> list[DatasetStats]:
    """``compute_stats`` over ``find_coco_files(root)``."""
    cocos = []
    for path in find_coco_files(root):
        data = read_json(path)
        if (
            isinstance(data, Mapping)
            and isinstance(data.get("images"), list)
            and isinstance(data.get("annotations"), list)
        ):
            cocos.append(data)
    if not cocos:
        raise DatasetError(f"no COCO files under {root}")
    return compute_stats(cocos)
