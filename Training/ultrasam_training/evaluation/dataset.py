"""A COCO file ready for evaluation: its images located, its instances grouped per image.

Images are found, in order, under ``image_root`` when one is given, by the project's rule
(``resolve_image_path``: relative names against the parent of the ``annotations`` folder), or
beside the JSON file. Every image is located before any model runs, so a missing file fails
fast instead of after an hour of inference.

A file that would be scored wrongly is refused before any model runs, never half-scored:
duplicate annotation ids (one instance would count twice), and an instance whose ``bbox`` is not
four finite numbers with positive width and height or whose ``area`` is not a finite number
>= 0 (the box prompt would be NaN, scoring Dice 0; pycocotools would silently ignore a negative
area). ``ultrasam data validate`` lists every such problem of a file at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ultrasam_training.data.coco import load_coco, resolve_image_path
from ultrasam_training.data.images import read_array
from ultrasam_training.data.limits import is_finite_number
from ultrasam_training.data.masks import decode_annotation_mask
from ultrasam_training.evaluation.errors import EvaluationError


@dataclass
class EvalImage:
    """One image entry and its ground-truth instances."""

    entry: dict
    path: Path
    annotations: list[dict] = field(default_factory=list)

    @property
    def id(self) -> int:
        return self.entry["id"]

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.entry["height"]), int(self.entry["width"])


def check_scorable(annotation: Mapping[str, Any], coco_path: Path) -> None:
    """Refuse an instance whose ``bbox``/``area`` would silently corrupt its scores (see the module docstring)."""
    where = f"{coco_path}: annotation {annotation.get('id')!r}"
    bbox = annotation.get("bbox")
    if not (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(is_finite_number(v) for v in bbox)
        and bbox[2] > 0
        and bbox[3] > 0
    ):
        raise EvaluationError(
            f"{where}: bbox {bbox!r} is not four finite numbers with positive width and height; "
            "fix the file (`ultrasam data validate` lists every problem)"
        )
    area = annotation.get("area")
    if not (is_finite_number(area) and area >= 0):
        raise EvaluationError(
            f"{where}: area {area!r} is not a finite number >= 0; "
            "fix the file (`ultrasam data validate` lists every problem)"
        )


def _locate(coco_path: Path, file_name: str, image_root: Path | None) -> Path:
    candidates = []
    if image_root is not None:
        candidates.append(Path(image_root) / file_name)
    candidates += [resolve_image_path(coco_path, file_name), coco_path.parent / file_name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise EvaluationError(f"{coco_path}: image {file_name!r} not found (tried {tried}); pass image_root (--image-root)")


@dataclass
class EvalDataset:
    """The images (with at least one instance) of a COCO file, optionally the first ``limit`` of them."""

    name: str
    coco_path: Path
    coco: dict
    images: list[EvalImage]

    @classmethod
    def load(
        cls,
        coco_path: str | Path,
        *,
        name: str | None = None,
        image_root: str | Path | None = None,
        limit: int | None = None,
    ) -> "EvalDataset":
        coco_path = Path(coco_path)
        if limit is not None and limit < 1:
            raise EvaluationError(f"limit must be a positive number of images, not {limit}")
        coco = load_coco(coco_path, unique_annotation_ids=True)
        by_image: dict[Any, list[dict]] = {}
        for annotation in coco["annotations"]:
            if not annotation.get("iscrowd", 0):
                check_scorable(annotation, coco_path)
                by_image.setdefault(annotation["image_id"], []).append(annotation)
        root = Path(image_root) if image_root is not None else None
        images = []
        for entry in coco["images"]:
            if entry["id"] not in by_image:
                continue
            if limit is not None and len(images) >= limit:
                break
            images.append(EvalImage(entry, _locate(coco_path, entry["file_name"], root), by_image[entry["id"]]))
        if not images:
            raise EvaluationError(f"{coco_path}: no image with an annotated instance to evaluate")
        kept = {image.id for image in images}
        subset = {
            **coco,
            "images": [image.entry for image in images],
            "annotations": [a for a in coco["annotations"] if a["image_id"] in kept],
        }
        return cls(name=name or coco_path.stem, coco_path=coco_path, coco=subset, images=images)

    @property
    def instance_count(self) -> int:
        return sum(len(image.annotations) for image in self.images)

    def read_image(self, image: EvalImage) -> np.ndarray:
        """Pixels of ``image``, checked against the size the COCO file declares."""
        pixels = read_array(image.path)
        if tuple(pixels.shape[:2]) != image.shape:
            raise EvaluationError(
                f"{image.path}: image is {pixels.shape[0]}x{pixels.shape[1]} but {self.coco_path} "
                f"declares {image.shape[0]}x{image.shape[1]}"
            )
        return pixels

    def truth_mask(self, image: EvalImage, annotation: dict) -> np.ndarray:
        """Boolean ground-truth mask of one instance; an empty one is an error (it has no prompt)."""
        mask = decode_annotation_mask(annotation, *image.shape)
        if not mask.any():
            raise EvaluationError(f"{self.coco_path}: annotation {annotation['id']} has an empty mask")
        return mask
