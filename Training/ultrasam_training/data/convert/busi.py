"""BUSI breast ultrasound (Al-Dhabyani et al. 2020) -> COCO.

Raw layout: ``Dataset_BUSI_with_GT/{benign,malignant,normal}/<name>.png`` with ``<name>_mask.png``
and, for a few images, further lesions in ``<name>_mask_1.png``, ``<name>_mask_2.png``. Each mask
file is thresholded (>= 150 of 255, as the released converter) and every connected component of
every mask file becomes one ``breast_nodule`` instance; the class folder is kept as the image-level
label. ``normal`` images have empty masks: like every image without any annotated structure they
are excluded (and reported) unless ``keep_empty=True`` (``--keep-empty``), which keeps them as
images without annotations.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any, Collection

from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples, natural_key, only_requested
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import read_gray_mask
from ultrasam_training.data.report import ConversionReport

DATASET = "busi"
CLASSES = ("benign", "malignant", "normal")
LESION_CLASSES = ("benign", "malignant")
THRESHOLD = 150
CATEGORY = "breast_nodule"
URL = "https://scholar.cu.edu.eg/?q=afahmy/pages/dataset"
_MASK_NAME = re.compile(r"^(?P<stem>.+)_mask(?:_(?P<index>\d+))?$")


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


def _load(image_path: Path, mask_paths: list[Path], class_name: str, threshold: int) -> Loaded:
    """The image and one ``breast_nodule`` mask per mask file (``source_mask`` names the file)."""
    if not image_path.is_file():
        raise DatasetError("mask without image")
    if not mask_paths:
        raise DatasetError("no <name>_mask.png")
    masks = [(CATEGORY, read_gray_mask(path) >= threshold) for path in mask_paths]
    return Loaded(image_path, masks, [f"{class_name}/{path.name}" for path in mask_paths])


def _samples(root: Path, report: ConversionReport, only: Collection[str] | None, threshold: int) -> list[Sample]:
    """One sample per image of the class folders (or of ``only``, whose missing entries are reported)."""
    samples = []
    for class_name in CLASSES:
        class_dir = root / class_name
        if not class_dir.is_dir():
            report.note(f"class folder {class_name}/ is missing")
            continue
        for image_path, mask_paths in _pairs(class_dir):
            load = partial(_load, image_path, mask_paths, class_name, threshold)
            samples.append(Sample(f"{class_name}/{image_path.name}", load, class_labels=[class_name]))
    return only_requested(samples, only, report)


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"only": None, "threshold": THRESHOLD}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert BUSI into ``out_dir``; ``only`` (``class/name.png`` paths) or ``limit`` convert a subset."""
    only, threshold = options.extras(OPTIONS, DATASET).values()
    root = find_root(raw_dir)
    report = ConversionReport(DATASET)
    return convert_samples(
        DATASET,
        [CATEGORY],
        _samples(root, report, only, threshold),
        out_dir,
        options,
        description="BUSI: Breast Ultrasound Images Dataset",
        url=URL,
        report=report,
    )
