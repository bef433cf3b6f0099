"""Check a COCO file before training or evaluation depends on it; returns problems, never raises on them.

Checks: schema (lists, required keys, positive sizes), unique ids that fit int64 (loaders such as
numpy/torch overflow on the 128-bit ids of the released tools; strings break mmdet), references
(annotation -> image, annotation -> category), every segmentation decodes at its image's size and
is not empty and is spelled as pycocotools expects, ``bbox`` within ``bbox_tolerance`` px of the mask's box, ``area`` within
``max(1 px, area_tolerance x mask area)`` of the mask's pixel count, and optionally that image
files exist.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Mapping

from ultrasam_training.data.coco import INT64_MAX, resolve_image_path
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.jsonio import read_json
from ultrasam_training.data.masks import rle_area, rle_bbox, segmentation_to_rle


def _id_problems(kind: str, values: list[Any], portable_ids: bool) -> list[str]:
    problems = []
    hashable = [v if isinstance(v, (int, str)) else repr(v) for v in values]
    for value, count in Counter(hashable).items():
        if count > 1:
            problems.append(f"{kind} id {value!r} used {count} times")
    if portable_ids:
        for value in values:
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{kind} id {value!r} is a {type(value).__name__}, not an integer")
            elif not 0 <= value <= INT64_MAX:
                problems.append(f"{kind} id {value} does not fit in int64")
    return problems


def _encoding_quirk(segmentation: Any) -> str | None:
    """A non-standard but repairable RLE spelling (``load_coco`` reads it; pycocotools does not)."""
    if not isinstance(segmentation, Mapping):
        return None
    if isinstance(segmentation.get("size"), str):
        return "RLE size is written as a string"
    counts = segmentation.get("counts")
    if isinstance(counts, str) and (counts.startswith(("b'", 'b"', "[")) and not counts.startswith("[]")):
        if counts.startswith(("b'", 'b"')) or "," in counts or " " in counts:
            return "RLE counts are a Python/JSON literal inside a string"
    return None


def validate(
    coco: Mapping[str, Any] | str | Path,
    *,
    portable_ids: bool = True,
    bbox_tolerance: float = 1.0,
    area_tolerance: float = 0.01,
    check_files: bool = False,
    coco_path: str | Path | None = None,
) -> list[str]:
    """Problems found in ``coco`` (a dict or a path); an empty list means the file is sound.

    ``check_files`` needs the JSON's path (given as ``coco`` or ``coco_path``) to resolve relative
    ``file_name`` entries (see ``coco.resolve_image_path``).
    """
    if isinstance(coco, (str, Path)):
        coco_path = Path(coco)
        try:
            coco = read_json(coco_path)
        except DatasetError as exc:
            return [str(exc)]
    if not isinstance(coco, Mapping):
        return ["top level is not a JSON object"]
    problems = []
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            problems.append(f"top-level {key!r} missing or not a list")
    if problems:
        return problems

    categories = [c for c in coco["categories"] if isinstance(c, Mapping)]
    if len(categories) != len(coco["categories"]) or any("id" not in c or "name" not in c for c in categories):
        problems.append("every category needs an id and a name")
    problems += _id_problems("category", [c.get("id") for c in categories], portable_ids)
    category_ids = {c.get("id") for c in categories}

    images: dict[Any, Mapping] = {}
    for index, image in enumerate(coco["images"]):
        where = f"image #{index}"
        if not isinstance(image, Mapping) or "id" not in image:
            problems.append(f"{where}: no id")
            continue
        where = f"image {image['id']!r}"
        height, width = image.get("height"), image.get("width")
        if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
            problems.append(f"{where}: height/width {height!r}x{width!r} are not positive integers")
        name = image.get("file_name")
        if not isinstance(name, str) or not name:
            problems.append(f"{where}: no file_name")
        elif check_files:
            if coco_path is None:
                problems.append("check_files needs the COCO file's path")
                check_files = False
            elif not resolve_image_path(coco_path, name).is_file():
                problems.append(f"{where}: file {resolve_image_path(coco_path, name)} not found")
        images.setdefault(image["id"] if isinstance(image["id"], (int, str)) else repr(image["id"]), image)
    problems += _id_problems("image", [i.get("id") for i in coco["images"] if isinstance(i, Mapping)], portable_ids)

    ann_ids = []
    for index, annotation in enumerate(coco["annotations"]):
        if not isinstance(annotation, Mapping):
            problems.append(f"annotation #{index}: not an object")
            continue
        if "id" not in annotation:
            problems.append(f"annotation #{index}: no id")
        else:
            ann_ids.append(annotation["id"])
        where = f"annotation {annotation.get('id', f'#{index}')!r}"
        image = images.get(annotation.get("image_id"))
        if image is None:
            problems.append(f"{where}: image_id {annotation.get('image_id')!r} is not an image")
            continue
        if annotation.get("category_id") not in category_ids:
            problems.append(f"{where}: category_id {annotation.get('category_id')!r} is not a category")
        if annotation.get("iscrowd", 0) not in (0, 1):
            problems.append(f"{where}: iscrowd {annotation.get('iscrowd')!r} is not 0 or 1")
        try:
            rle = segmentation_to_rle(annotation.get("segmentation"), int(image["height"]), int(image["width"]))
        except (DatasetError, TypeError, ValueError, KeyError) as exc:
            problems.append(f"{where}: segmentation: {exc}")
            continue
        quirk = _encoding_quirk(annotation.get("segmentation"))
        if quirk:
            problems.append(f"{where}: {quirk}; pycocotools-based loaders reject it (re-save via load_coco + write_coco)")
        area = rle_area(rle)
        if area == 0:
            problems.append(f"{where}: empty mask")
            continue
        given_area = annotation.get("area")
        if not isinstance(given_area, (int, float)) or isinstance(given_area, bool):
            problems.append(f"{where}: area {given_area!r} missing or not a number")
        elif abs(given_area - area) > max(1.0, area_tolerance * area):
            problems.append(f"{where}: area {given_area} but the mask has {area} px")
        bbox = annotation.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            problems.append(f"{where}: bbox {bbox!r} is not [x, y, w, h]")
        else:
            expected = rle_bbox(rle)
            if max(abs(a - b) for a, b in zip(bbox, expected)) > bbox_tolerance:
                problems.append(f"{where}: bbox {bbox} but the mask's box is {expected}")
    problems += _id_problems("annotation", ann_ids, portable_ids)
    return problems
