"""BUSI as downstream benchmark items: images with their class, lesions with their class.

The split is the project's fixed, seeded one (``../shared/data/splits.json``: 546 / 78 / 156 images,
stratified by class), so every downstream number is on the same test images as everything else.

* Image classification takes every image of a split with its class folder as label
  (benign / malignant / normal), read straight from ``splits.json``.
* Lesion tasks (instance segmentation, prompted classification) take the instances of the
  project's shared COCO splits (``shared:train`` / ``shared:val`` / ``shared:test_busi``, built by
  the data pipeline: one instance per connected component, small-object filter applied), so a
  lesion here is exactly a lesion of ``ultrasam evaluate`` (134 on the test split). Their class is
  the image's ``class_labels`` entry; normal images have no lesion.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ultrasam_training.train.errors import TrainingError

IMAGE_CLASSES = ("benign", "malignant", "normal")
LESION_CLASSES = ("benign", "malignant")
SPLITS = ("train", "val", "test")
_SHARED_SPLIT = {"train": "shared:train", "val": "shared:val", "test": "shared:test_busi"}


def content_digest(path: str | Path) -> str:
    """blake2b of a file's bytes: caches follow contents, not paths or modification times."""
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class ImageItem:
    """One BUSI image for image-level classification."""

    key: str  # ``class/name.png`` as in splits.json: stable across machines
    path: Path
    label: int  # index into IMAGE_CLASSES


@dataclass(frozen=True)
class Lesion:
    """One GT lesion instance with its class."""

    annotation: dict
    label: int  # index into LESION_CLASSES

    @property
    def annotation_id(self) -> str:
        return str(self.annotation["id"])


@dataclass
class LesionImage:
    """One image with all its lesions (they share the image's class)."""

    key: str
    path: Path
    image_id: int
    height: int
    width: int
    lesions: list[Lesion] = field(default_factory=list)

    def masks(self) -> np.ndarray:
        """``(N, H, W)`` bool masks of the lesions at the image's resolution."""
        from ultrasam_training.data.coco import decode_annotation_mask

        return np.stack([decode_annotation_mask(lesion.annotation, self.height, self.width) for lesion in self.lesions])


def busi_root(data_root: str | Path) -> Path:
    root = Path(data_root) / "busi" / "Dataset_BUSI_with_GT"
    if not root.is_dir():
        raise TrainingError(f"BUSI not found at {root} (set ULTRASAM_SHARED_DIR or the config's data_root)")
    return root


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise TrainingError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")


def _balanced(items: list, labels: Sequence[int], per_class: int | None) -> list:
    """The first ``per_class`` items of each class, in the split's order (smoke runs)."""
    if per_class is None:
        return items
    taken: dict[int, int] = {}
    kept = []
    for item, label in zip(items, labels):
        if taken.get(label, 0) < per_class:
            taken[label] = taken.get(label, 0) + 1
            kept.append(item)
    return kept


def classification_items(data_root: str | Path, split: str, per_class: int | None = None) -> list[ImageItem]:
    """The images of ``split`` with their class, in ``splits.json`` order."""
    _check_split(split)
    splits = json.loads((Path(data_root) / "splits.json").read_text())
    try:
        keys = splits["busi"][split]
    except KeyError:
        raise TrainingError(f"{data_root}/splits.json has no busi/{split} section") from None
    root = busi_root(data_root)
    items = []
    for key in keys:
        class_name = key.split("/", 1)[0]
        if class_name not in IMAGE_CLASSES:
            raise TrainingError(f"splits.json entry {key!r} is not under a BUSI class folder")
        path = root / key
        if not path.is_file():
            raise TrainingError(f"BUSI image listed in splits.json is missing: {path}")
        items.append(ImageItem(key, path, IMAGE_CLASSES.index(class_name)))
    return _balanced(items, [i.label for i in items], per_class)


def lesion_images(
    data_root: str | Path, split: str, splits_root: str | Path = "work_dirs/data", per_class: int | None = None
) -> list[LesionImage]:
    """The BUSI images of ``split`` that hold lesions, with their instances and class.

    Builds (or reuses) the project's shared COCO splits under ``splits_root``.
    """
    _check_split(split)
    from ultrasam_training.data.coco import load_coco, resolve_image_path
    from ultrasam_training.train.dataset import resolve_annotation_file

    ann_file = resolve_annotation_file(_SHARED_SPLIT[split], data_root, splits_root)
    coco = load_coco(ann_file)
    by_image: dict[Any, list[dict]] = {}
    for annotation in coco["annotations"]:
        if not annotation.get("iscrowd", 0):
            by_image.setdefault(annotation["image_id"], []).append(annotation)
    images = []
    for image in coco["images"]:
        if image.get("dataset") != "busi" or image["id"] not in by_image:
            continue
        labels = [c for c in image.get("class_labels") or [] if c in LESION_CLASSES]
        if len(labels) != 1:
            raise TrainingError(f"BUSI image {image.get('source_path')} has no single lesion class ({labels})")
        label = LESION_CLASSES.index(labels[0])
        images.append(
            LesionImage(
                key=str(image.get("source_path") or image["file_name"]),
                path=resolve_image_path(ann_file, image["file_name"]),
                image_id=int(image["id"]),
                height=int(image["height"]),
                width=int(image["width"]),
                lesions=[Lesion(a, label) for a in by_image[image["id"]]],
            )
        )
    if not images:
        raise TrainingError(f"no BUSI lesion in {ann_file}")
    return _balanced(images, [i.lesions[0].label for i in images], per_class)
