"""Check a COCO file before training or evaluation depends on it; returns problems, never raises on them.

Checks: schema (lists, required keys, positive sizes under ``limits.MAX_IMAGE_PIXELS``: a
segmentation of an oversized image is not decoded, since pycocotools would exhaust memory or crash),
ids that are integers or strings (``portable_ids``: integers only), unique ids that fit int64 (loaders such as
numpy/torch overflow on the 128-bit ids of the released tools; strings break mmdet), references
(annotation -> image, annotation -> category), every segmentation decodes at its image's size and
is not empty and is spelled as pycocotools expects, ``bbox`` four finite numbers with positive
width and height within ``bbox_tolerance`` px of the mask's box, ``area`` a finite number within
``max(1 px, area_tolerance x mask area)`` of the mask's pixel count, and optionally that image
files exist.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Mapping

from ultrasam_training.data.coco import INT64_MAX, is_id, resolve_image_path
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.jsonio import read_json
from ultrasam_training.data.limits import image_size_problem, is_finite_number
from ultrasam_training.data.masks import rle_area, rle_bbox, segmentation_to_rle


def _key(value: Any) -> Any:
    """A hashable stand-in for an id (a dict or list id must not crash the lookups nor match a str id)."""
    return value if value is None or is_id(value) else ("not an id", repr(value))


def _id_problems(kind: str, values: list[Any], portable_ids: bool) -> list[str]:
    problems = [
        f"{kind} id {value!r} used {count} times" for value, count in Counter(map(_key, values)).items() if count > 1
    ]
    for value in values:
        if value is None:
            continue
        if not is_id(value):
            problems.append(f"{kind} id {value!r} is a {type(value).__name__}; ids must be integers or strings")
        elif portable_ids and isinstance(value, str):
            problems.append(f"{kind} id {value!r} is a str, not an integer")
        elif portable_ids and not 0 <= value <= INT64_MAX:
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


def _image_size(image: Mapping, where: str, problems: list[str]) -> tuple[int, int] | None:
    """The image's (height, width) when its masks can be decoded safely; else None, the problem noted."""
    height, width = image.get("height"), image.get("width")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (height, width)):
        problems.append(f"{where}: height/width {height!r}x{width!r} are not positive integers")
        return None
    problem = image_size_problem(height, width)
    if problem:
        problems.append(f"{where}: {problem}; its masks are not decoded")
        return None
    return height, width


def _area_problem(given: Any, area: int, tolerance: float) -> str | None:
    if not isinstance(given, (int, float)) or isinstance(given, bool):
        return f"area {given!r} missing or not a number"
    if not is_finite_number(given):
        return f"area {given} is not a finite number"
    if abs(given - area) > max(1.0, tolerance * area):
        return f"area {given} but the mask has {area} px"
    return None


def _bbox_problem(bbox: Any, expected: list[float], tolerance: float) -> str | None:
    if not (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
    ):
        return f"bbox {bbox!r} is not [x, y, w, h]"
    if not all(is_finite_number(v) for v in bbox):
        return f"bbox {bbox} holds a non-finite value"
    if bbox[2] <= 0 or bbox[3] <= 0:
        return f"bbox {bbox} has no positive width and height"
    if max(abs(a - b) for a, b in zip(bbox, expected)) > tolerance:
        return f"bbox {bbox} but the mask's box is {expected}"
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
    category_ids = {_key(c.get("id")) for c in categories}

    sizes: dict[Any, tuple[int, int] | None] = {}
    for index, image in enumerate(coco["images"]):
        where = f"image #{index}"
        if not isinstance(image, Mapping) or "id" not in image:
            problems.append(f"{where}: no id")
            continue
        where = f"image {image['id']!r}"
        size = _image_size(image, where, problems)
        name = image.get("file_name")
        if not isinstance(name, str) or not name:
            problems.append(f"{where}: no file_name")
        elif check_files:
            if coco_path is None:
                problems.append("check_files needs the COCO file's path")
                check_files = False
            elif not resolve_image_path(coco_path, name).is_file():
                problems.append(f"{where}: file {resolve_image_path(coco_path, name)} not found")
        sizes.setdefault(_key(image["id"]), size)
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
        image_key = _key(annotation.get("image_id"))
        if image_key not in sizes:
            problems.append(f"{where}: image_id {annotation.get('image_id')!r} is not an image")
            continue
        if _key(annotation.get("category_id")) not in category_ids:
            problems.append(f"{where}: category_id {annotation.get('category_id')!r} is not a category")
        if annotation.get("iscrowd", 0) not in (0, 1):
            problems.append(f"{where}: iscrowd {annotation.get('iscrowd')!r} is not 0 or 1")
        size = sizes[image_key]
        if size is None:
            continue  # the image's size is reported; decoding at it could crash pycocotools
        try:
            rle = segmentation_to_rle(annotation.get("segmentation"), *size)
        except (DatasetError, TypeError, ValueError, KeyError) as exc:
            problems.append(f"{where}: segmentation: {exc}")
            continue
        quirk = _encoding_quirk(annotation.get("segmentation"))
        if quirk:
            problems.append(
                f"{where}: {quirk}; pycocotools-based loaders reject it (re-save via load_coco + write_coco)"
            )
        area = rle_area(rle)
        if area == 0:
            problems.append(f"{where}: empty mask")
            continue
        for problem in (
            _area_problem(annotation.get("area"), area, area_tolerance),
            _bbox_problem(annotation.get("bbox"), rle_bbox(rle), bbox_tolerance),
        ):
            if problem:
                problems.append(f"{where}: {problem}")
    problems += _id_problems("annotation", ann_ids, portable_ids)
    return problems
