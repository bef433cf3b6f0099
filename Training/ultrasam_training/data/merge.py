"""Merge several COCO dicts into one, with fresh integer ids and image paths under one root."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ultrasam_training.data.errors import DatasetError


def rebase_file_name(file_name: str, from_root: str | Path | None, to_root: str | Path | None) -> str:
    """Re-express a relative ``file_name`` (relative to ``from_root``) relative to ``to_root``.

    Absolute names stay absolute; without roots the name is kept. Paths that cannot be expressed
    relative to ``to_root`` (another drive) become absolute.
    """
    if Path(file_name).is_absolute() or from_root is None:
        return file_name
    absolute = Path(from_root).resolve() / file_name
    if to_root is None:
        return str(absolute)
    try:
        return Path(os.path.relpath(absolute, Path(to_root).resolve())).as_posix()
    except ValueError:
        return str(absolute)


def merge_cocos(
    parts: Sequence[Mapping[str, Any]],
    *,
    image_roots: Sequence[str | Path | None] | None = None,
    out_image_root: str | Path | None = None,
    info: Mapping[str, Any] | None = None,
) -> dict:
    """One COCO holding every image and annotation of ``parts``.

    Categories are merged by name (first id wins in order of appearance, renumbered 1..K).
    Image and annotation ids become 1..N; ``file_name`` is rebased from each part's image root to
    ``out_image_root`` (see ``rebase_file_name``).
    """
    if image_roots is not None and len(image_roots) != len(parts):
        raise DatasetError("merge_cocos: give one image root per part")
    categories: list[dict] = []
    category_by_name: dict[str, int] = {}
    images: list[dict] = []
    annotations: list[dict] = []
    for index, part in enumerate(parts):
        root = image_roots[index] if image_roots is not None else None
        category_map = {}
        for category in part["categories"]:
            if category["name"] not in category_by_name:
                new = {**category, "id": len(categories) + 1}
                categories.append(new)
                category_by_name[category["name"]] = new["id"]
            category_map[category["id"]] = category_by_name[category["name"]]
        image_map = {}
        for image in part["images"]:
            new_image = copy.deepcopy(image)
            new_image["id"] = len(images) + 1
            new_image["file_name"] = rebase_file_name(image["file_name"], root, out_image_root)
            image_map[image["id"]] = new_image["id"]
            images.append(new_image)
        for annotation in part["annotations"]:
            if annotation["image_id"] not in image_map:
                raise DatasetError(
                    f"merge_cocos: part {index} annotation refers to unknown image {annotation['image_id']!r}"
                )
            new_annotation = copy.deepcopy(annotation)
            new_annotation.update(
                id=len(annotations) + 1,
                image_id=image_map[annotation["image_id"]],
                category_id=category_map[annotation["category_id"]],
            )
            annotations.append(new_annotation)
    datasets = sorted({image.get("dataset", "?") for image in images})
    merged_info = dict(info or {"description": "merged: " + ", ".join(datasets), "datasets": datasets})
    return {"info": merged_info, "images": images, "annotations": annotations, "categories": categories}
