"""COCO files as this project writes and reads them.

Written files (``CocoBuilder`` + ``write_coco``):

* one annotation per connected component (8-connectivity) of each category's mask, compressed
  RLE with ``counts`` as ``str``; ``bbox`` and ``area`` come from pycocotools ``toBbox``/``area``;
* integer ids from 1 (128-bit ``uuid4().int`` ids of the original overflow int64 loaders);
* image entries keep what splitting and tracing need: ``dataset``, ``source_path`` (the image's
  path relative to the raw dataset folder, as ``splits.json`` lists it), and when known
  ``patient_id``, ``case_id``, ``class_labels`` (image-level labels such as benign/malignant) and
  ``split`` (an official split of the source: ``train``/``val``/``test``).

``file_name`` is either absolute (images referenced in place) or relative to the *image root* of
the file, which is the parent of the folder holding the JSON: ``OUT/annotations/x.json`` has its
images under ``OUT`` (``images/busi__00000.png`` for one dataset, ``busi/images/...`` for merged
files). ``image_root_of`` and ``resolve_image_path`` implement that rule.

Read files (``load_coco``): any COCO with polygons, uncompressed or compressed RLE, string or
128-bit ids; returned in the written form above (see ``normalise_coco``).
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.jsonio import read_json, write_json
from ultrasam_training.data.limits import check_image_size
from ultrasam_training.data.masks import (
    connected_components,
    decode_annotation_mask,
    encode_mask,
    rle_area,
    rle_bbox,
    segmentation_to_rle,
)

__all__ = [
    "AGNOSTIC_CATEGORY",
    "CocoBuilder",
    "annotation_from_rle",
    "decode_annotation_mask",
    "image_root_of",
    "load_coco",
    "normalise_coco",
    "resolve_image_path",
    "write_coco",
]

INT64_MAX = 2**63 - 1
AGNOSTIC_CATEGORY = {"id": 1, "name": "object", "supercategory": "none"}
IMAGE_KEYS_IN_ORDER = ("id", "file_name", "height", "width", "dataset", "source_path")


def annotation_from_rle(rle: Mapping[str, Any], *, ann_id: int, image_id: int, category_id: int, **extra: Any) -> dict:
    """One COCO annotation whose ``bbox`` and ``area`` are derived from the RLE itself."""
    annotation = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "iscrowd": 0,
        "segmentation": {"size": list(rle["size"]), "counts": rle["counts"]},
        "area": rle_area(rle),
        "bbox": rle_bbox(rle),
    }
    annotation.update(extra)
    return annotation


class CocoBuilder:
    """Accumulates images and instance annotations of one dataset; ``to_dict`` gives the COCO dict."""

    def __init__(
        self,
        dataset: str,
        categories: Mapping[int, str] | Sequence[str],
        *,
        description: str | None = None,
        url: str | None = None,
        supercategory: str = "none",
    ) -> None:
        if not isinstance(categories, Mapping):
            categories = {index + 1: name for index, name in enumerate(categories)}
        if not categories:
            raise DatasetError("a COCO file needs at least one category")
        self.dataset = dataset
        self.categories = [
            {"id": int(cid), "name": str(name), "supercategory": supercategory} for cid, name in categories.items()
        ]
        self._category_ids = {c["id"] for c in self.categories}
        self.info = {"description": description or dataset, "url": url or "", "dataset": dataset}
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def category_id(self, name: str) -> int:
        """The id of the category called ``name``."""
        for category in self.categories:
            if category["name"] == name:
                return category["id"]
        raise DatasetError(f"{self.dataset}: no category named {name!r}")

    def add_image(
        self,
        file_name: str,
        height: int,
        width: int,
        *,
        source_path: str,
        patient_id: str | None = None,
        case_id: str | None = None,
        class_labels: Iterable[str] = (),
        split: str | None = None,
        **extra: Any,
    ) -> int:
        """Register an image and return its id (1, 2, ...)."""
        height, width = check_image_size(height, width, str(source_path))
        image = {
            "id": len(self.images) + 1,
            "file_name": str(file_name),
            "height": height,
            "width": width,
            "dataset": self.dataset,
            "source_path": str(source_path),
        }
        if patient_id is not None:
            image["patient_id"] = str(patient_id)
        if case_id is not None:
            image["case_id"] = str(case_id)
        labels = [str(label) for label in class_labels]
        if labels:
            image["class_labels"] = labels
        if split is not None:
            image["split"] = split
        image.update(extra)
        self.images.append(image)
        return image["id"]

    def _image(self, image_id: int) -> dict:
        if not 1 <= image_id <= len(self.images):
            raise DatasetError(f"{self.dataset}: unknown image id {image_id}")
        return self.images[image_id - 1]

    def add_rle(self, image_id: int, rle: Mapping[str, Any], category_id: int, **extra: Any) -> int:
        """Add one instance given as compressed RLE (already one object); returns its annotation id."""
        image = self._image(image_id)
        if category_id not in self._category_ids:
            raise DatasetError(f"{self.dataset}: unknown category id {category_id}")
        if list(rle["size"]) != [image["height"], image["width"]]:
            raise DatasetError(f"{image['source_path']}: mask size {rle['size']} differs from the image")
        annotation = annotation_from_rle(
            rle, ann_id=len(self.annotations) + 1, image_id=image_id, category_id=category_id, **extra
        )
        self.annotations.append(annotation)
        return annotation["id"]

    def add_mask(self, image_id: int, mask: np.ndarray, category_id: int, **extra: Any) -> int:
        """Add every connected component of a binary ``mask`` as one instance; returns how many."""
        image = self._image(image_id)
        if mask.shape != (image["height"], image["width"]):
            raise DatasetError(
                f"{image['source_path']}: mask shape {mask.shape} differs from the image "
                f"{(image['height'], image['width'])}"
            )
        added = 0
        for component in connected_components(mask):
            self.add_rle(image_id, encode_mask(component), category_id, **extra)
            added += 1
        return added

    def add_label_map(
        self, image_id: int, label_map: np.ndarray, value_to_category: Mapping[int, int], **extra: Any
    ) -> int:
        """Add the components of ``label_map == value`` for every mapped value; returns how many."""
        return sum(
            self.add_mask(image_id, label_map == value, category_id, **extra)
            for value, category_id in value_to_category.items()
        )

    def to_dict(self) -> dict:
        """The COCO dict (deep copy, safe to modify)."""
        return copy.deepcopy(
            {"info": self.info, "images": self.images, "annotations": self.annotations, "categories": self.categories}
        )


def write_coco(coco: Mapping[str, Any], path: str | Path, *, overwrite: bool = False) -> Path:
    """Atomically write a COCO dict; refuses to replace an existing file unless ``overwrite``."""
    return write_json(coco, path, overwrite=overwrite)


def image_root_of(coco_path: str | Path) -> Path:
    """The folder relative ``file_name`` entries of ``coco_path`` are resolved against.

    Files this package writes live in ``<root>/annotations/``; their images are under ``<root>``.
    """
    return Path(coco_path).resolve().parent.parent


def resolve_image_path(coco_path: str | Path, file_name: str) -> Path:
    """Absolute path of an image entry's ``file_name`` (absolute names are returned unchanged)."""
    path = Path(file_name)
    return path if path.is_absolute() else image_root_of(coco_path) / path


def _is_portable_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= INT64_MAX


def is_id(value: Any) -> bool:
    """An id this package can key on: an int (not a bool) or a string (renumbered when not portable)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _check_id(value: Any, where: str) -> Any:
    if not is_id(value):
        raise DatasetError(f"{where} {value!r} is a {type(value).__name__}; ids must be integers or strings")
    return value


def _duplicate_ids(values: Iterable[Any]) -> list[Any]:
    """Ids (int or str; None ignored) used more than once, in order of first use."""
    counts = Counter(value for value in values if value is not None)
    return [value for value, count in counts.items() if count > 1]


def _category_id(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if not _is_portable_id(value):
        raise DatasetError(f"category id {value!r} is not a non-negative integer")
    return value


def normalise_coco(raw: Mapping[str, Any], *, source: str = "COCO", unique_annotation_ids: bool = False) -> dict:
    """Return a copy of ``raw`` in the form this project writes.

    * ids must be integers or strings; image sizes positive and at most ``limits.MAX_IMAGE_PIXELS``;
    * image ids are kept when all are unique integers that fit int64, otherwise renumbered 1..N
      (the original goes to ``source_id``); annotation ids likewise, and assigned where missing;
    * every segmentation becomes compressed RLE (``counts`` str, ``size`` [h, w] list);
    * missing ``bbox``/``area``/``iscrowd`` are filled from the mask; present ones are kept as given
      (``validate`` reports disagreements rather than this function hiding them).

    Raises ``DatasetError`` on what cannot be repaired unambiguously: duplicate image ids, an
    annotation pointing at no image, an unknown category, an undecodable or wrongly sized mask;
    with ``unique_annotation_ids`` (evaluation: each instance is scored once) also on duplicate
    annotation ids, which are otherwise renumbered.
    """
    for key in ("images", "annotations", "categories"):
        if not isinstance(raw.get(key), list):
            raise DatasetError(f"{source}: top-level {key!r} must be a list")
    categories = []
    for category in raw["categories"]:
        if not isinstance(category, Mapping) or "id" not in category or "name" not in category:
            raise DatasetError(f"{source}: every category needs an id and a name")
        supercategory = category.get("supercategory", "none")
        try:
            category_id = _category_id(category["id"])
        except DatasetError as exc:
            raise DatasetError(f"{source}: {exc}") from exc
        categories.append({**category, "id": category_id, "supercategory": supercategory})
    category_ids = [c["id"] for c in categories]
    if len(set(category_ids)) != len(category_ids):
        raise DatasetError(f"{source}: duplicate category ids")

    raw_image_ids = []
    for image in raw["images"]:
        if not isinstance(image, Mapping) or "id" not in image:
            raise DatasetError(f"{source}: every image needs an id")
        _check_id(image["id"], f"{source}: image id")
        for key in ("file_name", "height", "width"):
            if key not in image:
                raise DatasetError(f"{source}: image {image['id']!r} has no {key!r}")
        raw_image_ids.append(image["id"])
    duplicates = _duplicate_ids(raw_image_ids)
    if duplicates:
        raise DatasetError(f"{source}: duplicate image ids (first: {duplicates[0]!r})")
    keep_image_ids = all(_is_portable_id(v) for v in raw_image_ids)
    id_map: dict[Any, int] = {}
    images = []
    sizes: dict[int, tuple[int, int]] = {}
    for index, image in enumerate(raw["images"]):
        new_id = image["id"] if keep_image_ids else index + 1
        height, width = check_image_size(image["height"], image["width"], f"{source}: image {image['id']!r}")
        entry = {**image, "id": new_id, "height": height, "width": width}
        if not keep_image_ids:
            entry["source_id"] = image["id"]
        id_map[image["id"]] = new_id
        sizes[new_id] = (entry["height"], entry["width"])
        images.append(entry)

    raw_ann_ids = [a.get("id") if isinstance(a, Mapping) else None for a in raw["annotations"]]
    for value in raw_ann_ids:
        if value is not None:
            _check_id(value, f"{source}: annotation id")
    duplicates = _duplicate_ids(raw_ann_ids)
    if duplicates and unique_annotation_ids:
        raise DatasetError(
            f"{source}: annotation id {duplicates[0]!r} is used more than once "
            f"({len(duplicates)} duplicate(s)); each instance must have its own id"
        )
    keep_ann_ids = all(_is_portable_id(v) for v in raw_ann_ids) and not duplicates
    annotations = []
    for index, annotation in enumerate(raw["annotations"]):
        if not isinstance(annotation, Mapping):
            raise DatasetError(f"{source}: annotation #{index} is not an object")
        where = f"{source}: annotation {annotation.get('id', f'#{index}')!r}"
        image_key = annotation.get("image_id")
        if image_key is not None:
            _check_id(image_key, f"{where}: image_id")
        if image_key not in id_map and isinstance(image_key, str) and image_key.isdigit():
            image_key = int(image_key)
        if image_key not in id_map:
            raise DatasetError(f"{where} refers to image {annotation.get('image_id')!r}, which is not listed")
        image_id = id_map[image_key]
        try:
            category_id = _category_id(annotation.get("category_id"))
        except DatasetError as exc:
            raise DatasetError(f"{where}: {exc}") from exc
        if category_id not in category_ids:
            raise DatasetError(f"{where} has unknown category {category_id}")
        height, width = sizes[image_id]
        try:
            rle = segmentation_to_rle(annotation.get("segmentation"), height, width)
        except DatasetError as exc:
            raise DatasetError(f"{where}: {exc}") from exc
        entry = {**annotation, "image_id": image_id, "category_id": category_id, "segmentation": rle}
        entry["id"] = annotation["id"] if keep_ann_ids else index + 1
        if not keep_ann_ids and annotation.get("id") is not None:
            entry["source_id"] = annotation["id"]
        entry.setdefault("iscrowd", 0)
        if entry.get("area") is None:
            entry["area"] = rle_area(rle)
        if entry.get("bbox") is None:
            entry["bbox"] = rle_bbox(rle)
        annotations.append(entry)
    result = {
        key: copy.deepcopy(value) for key, value in raw.items() if key not in ("images", "annotations", "categories")
    }
    result.update({"images": images, "annotations": annotations, "categories": categories})
    return result


def load_coco(path: str | Path, *, unique_annotation_ids: bool = False) -> dict:
    """Read a COCO JSON file in any supported variant and return it normalised (see ``normalise_coco``)."""
    raw = read_json(path)
    if not isinstance(raw, Mapping):
        raise DatasetError(f"{path}: a COCO file must hold a JSON object")
    return normalise_coco(raw, source=str(path), unique_annotation_ids=unique_annotation_ids)
