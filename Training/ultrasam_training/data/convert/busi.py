"""BUSI breast ultrasound (Al-Dhabyani et al. 2020) -> COCO.

Raw layout: ``Dataset_BUSI_with_GT/{benign,malignant,normal}/<name>.png`` with ``<name>_mask.png``
and, for a few images, further lesions in ``<name>_mask_1.png``, ``<name>_mask_2.png``. Each mask
file is thresholded (>= 150 of 255, as the released converter) and every connected component of
every mask file becomes one ``breast_nodule`` instance; the class folder is kept as the image-level
label. ``normal`` images have empty masks: they are excluded (and reported) unless
``keep_normal=True``, which keeps them as images without annotations.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Collection

from tqdm import tqdm

from ultrasam_training.data.coco import CocoBuilder
from ultrasam_training.data.convert.output import DatasetOutput
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import image_size, read_gray_mask
from ultrasam_training.data.report import ConversionReport

DATASET = "busi"
CLASSES = ("benign", "malignant", "normal")
LESION_CLASSES = ("benign", "malignant")
THRESHOLD = 150
CATEGORY = "breast_nodule"
URL = "https://scholar.cu.edu.eg/?q=afahmy/pages/dataset"
_MASK_NAME = re.compile(r"^(?P<stem>.+)_mask(?:_(?P<index>\d+))?$")


def natural_key(text: str) -> tuple:
    """Sort key that puts ``benign (2)`` before ``benign (10)``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def find_root(raw_dir: str | Path) -> Path:
    """The folder holding the class sub-folders: ``raw_dir`` itself or its ``Dataset_BUSI_with_GT``."""
    raw_dir = Path(raw_dir)
    for candidate in (raw_dir, raw_dir / "Dataset_BUSI_with_GT"):
        if any((candidate / name).is_dir() for name in CLASSES):
            return candidate
    raise DatasetError(f"{raw_dir}: no benign/malignant/normal folders (expected Dataset_BUSI_with_GT/<class>/)")


def _pairs(class_dir: Path) -> list[tuple[Path, list[Path]]]:
    """(image, [masks]) of one class folder; masks sorted as _mask, _mask_1, _mask_2, ..."""
    images: dict[str, Path] = {}
    masks: dict[str, list[tuple[int, Path]]] = {}
    for path in class_dir.iterdir():
        if path.suffix.lower() != ".png" or not path.is_file():
            continue
        match = _MASK_NAME.match(path.stem)
        if match:
            masks.setdefault(match["stem"], []).append((int(match["index"] or 0), path))
        else:
            images[path.stem] = path
    orphans = sorted(set(masks) - set(images))
    pairs = [(images[stem], [p for _, p in sorted(masks.get(stem, []))]) for stem in sorted(images, key=natural_key)]
    pairs += [(class_dir / f"{stem}.png", []) for stem in orphans]  # reported as missing images
    return pairs


def convert(
    raw_dir: str | Path,
    out_dir: str | Path,
    *,
    image_mode: str = "copy",
    overwrite: bool = False,
    keep_normal: bool = False,
    only: Collection[str] | None = None,
    limit: int | None = None,
    threshold: int = THRESHOLD,
    progress: bool = True,
) -> ConversionReport:
    """Convert BUSI into ``out_dir``; ``only`` (``class/name.png`` paths) or ``limit`` convert a subset."""
    root = find_root(raw_dir)
    output = DatasetOutput(DATASET, out_dir, image_mode=image_mode, overwrite=overwrite)
    builder = CocoBuilder(DATASET, [CATEGORY], description="BUSI: Breast Ultrasound Images Dataset", url=URL)
    category_id = builder.category_id(CATEGORY)
    report = ConversionReport(DATASET)
    wanted = set(only) if only is not None else None
    work = []
    for class_name in CLASSES:
        class_dir = root / class_name
        if not class_dir.is_dir():
            report.note(f"class folder {class_name}/ is missing")
            continue
        for image_path, mask_paths in _pairs(class_dir):
            source_path = f"{class_name}/{image_path.name}"
            if wanted is None or source_path in wanted:
                work.append((class_name, source_path, image_path, mask_paths))
    if limit is not None:
        work = work[:limit]
    if wanted is not None:
        found = {item[1] for item in work}
        for missing in sorted(wanted - found, key=natural_key):
            report.skip(missing, "requested but not found")

    for class_name, source_path, image_path, mask_paths in tqdm(work, desc="BUSI", unit="img", disable=not progress):
        if class_name == "normal" and not keep_normal:
            report.exclude(source_path, "normal: no lesion (keep_normal=True keeps it without annotations)")
            continue
        if not image_path.is_file():
            report.skip(source_path, "mask without image")
            continue
        if not mask_paths:
            report.skip(source_path, "no <name>_mask.png")
            continue
        try:
            height, width = image_size(image_path)
            masks = [(mask_path, read_gray_mask(mask_path)) for mask_path in mask_paths]
        except DatasetError as exc:
            report.skip(source_path, str(exc))
            continue
        mismatched = [m.name for m, array in masks if array.shape != (height, width)]
        if mismatched:
            report.skip(source_path, f"mask size differs from the image {width}x{height}: {', '.join(mismatched)}")
            continue
        foreground = [(m, array >= threshold) for m, array in masks]
        if class_name != "normal" and not any(mask.any() for _, mask in foreground):
            report.skip(source_path, f"{class_name} image with empty mask(s)")
            continue
        file_name = output.place_image_or_skip(image_path, report, source_path)
        if file_name is None:
            continue
        image_id = builder.add_image(file_name, height, width, source_path=source_path, class_labels=[class_name])
        added = sum(
            builder.add_mask(image_id, mask, category_id, source_mask=f"{class_name}/{mask_path.name}")
            for mask_path, mask in foreground
        )
        if added == 0:
            report.empty.append(source_path)
        report.images += 1
        report.instances += added
    output.finish(builder.to_dict(), report)
    return report
