"""Explicit, reported filters: small objects and the per-image instance cap.

The released pipeline named its files "noSmall" but contained no such filter, and its training
silently kept at most 20 instances per image. Here both are explicit functions that return what
they removed.

Small-object threshold (``is_small``): an instance is small when its area is below
``max(MIN_PIXELS, MIN_FRACTION * image area)``, i.e. 16 px or 0.01 % of the image.
Why: UltraSam predicts masks on a 256 x 256 grid (the 1024-px input downsampled 4x). 0.01 % of
the image is about 6.5 cells of that grid (2.5 x 2.5 for a square image), the smallest blob the
decoder can draw; 16 px guards small images where the fraction is below a 4 x 4 patch. What falls
below is mostly annotation debris: 1-7 px specks next to BUSI lesions, for example.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

from ultrasam_training.data.errors import DatasetError

MIN_PIXELS = 16
MIN_FRACTION = 1e-4
CAP_POLICIES = ("report", "keep_largest")


def small_threshold(
    height: int, width: int, *, min_pixels: int = MIN_PIXELS, min_fraction: float = MIN_FRACTION
) -> float:
    """Area (px) below which an instance of an image ``height`` x ``width`` counts as small."""
    return max(float(min_pixels), min_fraction * height * width)


@dataclass
class FilterReport:
    """Annotations a filter removed (with dataset, image and area) and images it left empty."""

    rule: str
    removed: list[dict] = field(default_factory=list)
    over_cap: list[dict] = field(default_factory=list)
    left_empty: list[str] = field(default_factory=list)

    def by_dataset(self) -> dict[str, int]:
        return dict(Counter(item["dataset"] for item in self.removed))

    def summary(self) -> str:
        lines = [f"{self.rule}: removed {len(self.removed)} instances"]
        lines += [f"  {dataset}: {count}" for dataset, count in sorted(self.by_dataset().items())]
        if self.over_cap:
            lines.append(f"  {len(self.over_cap)} images above the cap")
        if self.left_empty:
            lines.append(f"  {len(self.left_empty)} images left without instances (kept)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"rule": self.rule, "removed": self.removed, "over_cap": self.over_cap, "left_empty": self.left_empty}


def _removal_record(image: Mapping[str, Any], annotation: Mapping[str, Any], why: str) -> dict:
    return {
        "dataset": image.get("dataset", ""),
        "source_path": image.get("source_path", image.get("file_name")),
        "annotation_id": annotation["id"],
        "area": annotation["area"],
        "why": why,
    }


def _images_left_empty(coco: Mapping[str, Any], kept: list[dict], touched: set) -> list[str]:
    with_annotations = {a["image_id"] for a in kept}
    return [
        str(image.get("source_path", image["file_name"]))
        for image in coco["images"]
        if image["id"] in touched and image["id"] not in with_annotations
    ]


def filter_small_objects(
    coco: Mapping[str, Any], *, min_pixels: int = MIN_PIXELS, min_fraction: float = MIN_FRACTION
) -> tuple[dict, FilterReport]:
    """A copy of ``coco`` without small instances (see module docstring) and the list removed."""
    images = {image["id"]: image for image in coco["images"]}
    report = FilterReport(f"small objects (area < max({min_pixels} px, {min_fraction:g} x image area))")
    kept, touched = [], set()
    for annotation in coco["annotations"]:
        image = images[annotation["image_id"]]
        limit = small_threshold(image["height"], image["width"], min_pixels=min_pixels, min_fraction=min_fraction)
        if annotation["area"] < limit:
            report.removed.append(_removal_record(image, annotation, f"area {annotation['area']} < {limit:g}"))
            touched.add(image["id"])
        else:
            kept.append(annotation)
    report.left_empty = _images_left_empty(coco, kept, touched)
    result = copy.deepcopy(dict(coco))
    result["annotations"] = copy.deepcopy(kept)
    return result, report


def cap_instances(coco: Mapping[str, Any], max_instances: int, *, policy: str = "report") -> tuple[dict, FilterReport]:
    """Handle images with more than ``max_instances`` instances.

    ``report`` keeps everything and lists those images; ``keep_largest`` keeps the largest
    ``max_instances`` of each and lists every instance removed.
    """
    if policy not in CAP_POLICIES:
        raise DatasetError(f"policy must be one of {CAP_POLICIES}, not {policy!r}")
    if max_instances < 1:
        raise DatasetError("max_instances must be at least 1")
    report = FilterReport(f"instance cap {max_instances} per image ({policy})")
    per_image: dict[int, list[dict]] = {}
    for annotation in coco["annotations"]:
        per_image.setdefault(annotation["image_id"], []).append(annotation)
    images = {image["id"]: image for image in coco["images"]}
    dropped: set = set()
    for image_id, image_annotations in per_image.items():
        if len(image_annotations) <= max_instances:
            continue
        image = images[image_id]
        report.over_cap.append(
            {
                "dataset": image.get("dataset", ""),
                "source_path": image.get("source_path"),
                "instances": len(image_annotations),
            }
        )
        if policy == "keep_largest":
            ranked = sorted(image_annotations, key=lambda a: (-a["area"], a["id"]))
            for annotation in ranked[max_instances:]:
                report.removed.append(_removal_record(image, annotation, f"beyond the {max_instances} largest"))
                dropped.add(id(annotation))
    result = copy.deepcopy(dict(coco))
    result["annotations"] = [copy.deepcopy(a) for a in coco["annotations"] if id(a) not in dropped]
    return result, report
