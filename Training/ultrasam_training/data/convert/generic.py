"""Any "image folder + mask folder" dataset -> COCO: what most users have.

Images are found under ``RAW/<image_dir>`` (recursively with ``recursive=True``); the masks of
``sub/name.ext`` are the files of ``RAW/<mask_dir>/sub/`` matching ``mask_pattern`` with
``{stem}`` replaced by ``name`` (glob wildcards allowed, so ``{stem}_mask*.png`` also finds second
masks; every matching file is added). When images and masks share a folder, files matching the
mask pattern are not taken as images.

Mask values -> categories: ``categories`` maps a grey value (int) or an RGB colour (3-tuple) to a
category name; without it, every pixel >= ``threshold`` is one category ``object``. Values present
in a mask but mapped to nothing are reported (pixel counts), never dropped in silence.
Optional ``patient_pattern``: a regular expression whose first group, searched in the image's
relative path, is the patient id (for patient-level splits).
"""

from __future__ import annotations

import fnmatch
import glob
import re
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from tqdm import tqdm

from ultrasam_training.data.coco import CocoBuilder
from ultrasam_training.data.convert.busi import natural_key
from ultrasam_training.data.convert.output import DatasetOutput
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import IMAGE_SUFFIXES, image_size, read_color_mask, read_gray_mask
from ultrasam_training.data.report import ConversionReport

CategoryKey = int | tuple[int, int, int]
_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _has_image_suffix(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES)


def parse_category(text: str) -> tuple[CategoryKey, str]:
    """``"255=lesion"`` -> (255, "lesion"); ``"0,255,0=benign"`` -> ((0, 255, 0), "benign")."""
    value, sep, name = text.partition("=")
    if not sep or not name.strip():
        raise DatasetError(f"category {text!r} must read VALUE=NAME or R,G,B=NAME")
    try:
        numbers = tuple(int(v) for v in value.split(","))
    except ValueError as exc:
        raise DatasetError(f"category value {value!r} is not an integer or R,G,B") from exc
    if len(numbers) not in (1, 3):
        raise DatasetError(f"category value {value!r} must be one grey value or R,G,B")
    return (numbers[0] if len(numbers) == 1 else numbers), name.strip()


def _values_present(mask: np.ndarray) -> Counter:
    if mask.ndim == 2:
        values, counts = np.unique(mask, return_counts=True)
        return Counter({int(v): int(c) for v, c in zip(values, counts)})
    colours, counts = np.unique(mask.reshape(-1, 3), axis=0, return_counts=True)
    return Counter({tuple(int(x) for x in colour): int(c) for colour, c in zip(colours, counts)})


def convert(
    raw_dir: str | Path,
    out_dir: str | Path,
    *,
    dataset: str = "generic",
    image_dir: str = "images",
    mask_dir: str = "masks",
    mask_pattern: str = "{stem}.png",
    categories: Mapping[CategoryKey, str] | Sequence[str] | None = None,
    threshold: int = 1,
    recursive: bool = False,
    patient_pattern: str | None = None,
    class_from_folder: bool = False,
    image_mode: str = "copy",
    overwrite: bool = False,
    keep_empty: bool = False,
    limit: int | None = None,
    progress: bool = True,
) -> ConversionReport:
    """Convert paired image/mask folders under ``raw_dir`` into ``out_dir`` as dataset ``dataset``."""
    if not _DATASET_NAME.match(dataset) or "__" in dataset:
        raise DatasetError(f"dataset name {dataset!r}: use letters, digits, '_', '-', '.' (no '__')")
    if "{stem}" not in mask_pattern:
        raise DatasetError(f"mask_pattern {mask_pattern!r} must contain {{stem}}")
    if isinstance(categories, Sequence) and not isinstance(categories, str):
        categories = {index + 1: name for index, name in enumerate(categories)}
    raw_dir = Path(raw_dir)
    images_root, masks_root = raw_dir / image_dir, raw_dir / mask_dir
    for folder in (images_root, masks_root):
        if not folder.is_dir():
            raise DatasetError(f"folder not found: {folder}")
    colour = bool(categories) and any(isinstance(key, tuple) for key in categories)
    if colour and not all(isinstance(key, tuple) and len(key) == 3 for key in categories):
        raise DatasetError("categories must be all grey values or all R,G,B colours")
    names = list(dict.fromkeys(categories.values())) if categories else ["object"]
    builder = CocoBuilder(dataset, names, description=f"{dataset} (generic image/mask folders)")
    patient_regex = re.compile(patient_pattern) if patient_pattern else None

    mask_glob = mask_pattern.replace("{stem}", "*")
    candidates = images_root.rglob("*") if recursive else images_root.iterdir()
    image_paths = sorted(
        (p for p in candidates if p.is_file() and _has_image_suffix(p) and not p.name.startswith(".")),
        key=lambda p: natural_key(p.relative_to(images_root).as_posix()),
    )
    if images_root.resolve() == masks_root.resolve():
        image_paths = [p for p in image_paths if not fnmatch.fnmatch(p.name, mask_glob)]
    if limit is not None:
        image_paths = image_paths[:limit]
    if not image_paths:
        raise DatasetError(f"no images in {images_root}")

    output = DatasetOutput(dataset, out_dir, image_mode=image_mode, overwrite=overwrite)
    report = ConversionReport(dataset)
    unmapped: Counter = Counter()
    for image_path in tqdm(image_paths, desc=dataset, unit="img", disable=not progress):
        relative = image_path.relative_to(images_root)
        source_path = relative.as_posix()
        stem = image_path.name[: -len(".nii.gz")] if image_path.name.lower().endswith(".nii.gz") else image_path.stem
        mask_folder = masks_root / relative.parent
        pattern = mask_pattern.replace("{stem}", glob.escape(stem))
        mask_paths = sorted(
            (Path(p) for p in glob.glob(str(Path(glob.escape(str(mask_folder))) / pattern)) if Path(p) != image_path),
            key=lambda p: natural_key(p.name),
        )
        if not mask_paths:
            report.skip(source_path, f"no mask matching {mask_folder / mask_pattern.replace('{stem}', stem)}")
            continue
        try:
            height, width = image_size(image_path)
            masks = [(m, read_color_mask(m) if colour else read_gray_mask(m)) for m in mask_paths]
        except DatasetError as exc:
            report.skip(source_path, str(exc))
            continue
        mismatched = [m.name for m, array in masks if array.shape[:2] != (height, width)]
        if mismatched:
            report.skip(source_path, f"mask size differs from the image {width}x{height}: {', '.join(mismatched)}")
            continue
        per_category: list[tuple[str, np.ndarray, Path]] = []
        for mask_path, array in masks:
            if categories:
                present = _values_present(array)
                for key, name in categories.items():
                    hit = np.all(array == np.array(key), axis=-1) if colour else array == key
                    per_category.append((name, hit, mask_path))
                    present.pop(key, None)
                background = (0, 0, 0) if colour else 0
                present.pop(background, None)
                unmapped.update(present)
            else:
                per_category.append(("object", array >= threshold, mask_path))
        if not any(hit.any() for _, hit, _ in per_category) and not keep_empty:
            report.skip(source_path, "mask has no mapped foreground (keep_empty=True keeps such images)")
            continue
        patient_id = None
        if patient_regex:
            match = patient_regex.search(source_path)
            if match is None or not match.groups():
                report.note(f"{source_path}: patient_pattern did not match; the image is its own patient")
            else:
                patient_id = match.group(1)
        labels = [relative.parent.name] if class_from_folder and relative.parent.name else []
        file_name = output.place_image_or_skip(image_path, report, source_path)
        if file_name is None:
            continue
        image_id = builder.add_image(
            file_name, height, width, source_path=source_path, patient_id=patient_id, class_labels=labels
        )
        added = sum(
            builder.add_mask(image_id, hit, builder.category_id(name), source_mask=mask_path.name)
            for name, hit, mask_path in per_category
        )
        if added == 0:
            report.empty.append(source_path)
        report.images += 1
        report.instances += added
    if unmapped:
        listing = ", ".join(f"{value}: {count} px" for value, count in sorted(unmapped.items(), key=str))
        report.note(f"mask values with no category (left as background): {listing}")
    output.finish(builder.to_dict(), report)
    return report
