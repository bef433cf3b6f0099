"""BUID, Breast Ultrasound Images Database (Abbasian Ardakani et al. 2023, qamebi.com) -> COCO.

Raw layout: ``Benign/`` and ``Malignant/`` folders (in the raw folder or its single sub-folder),
each holding BMP images and TIF masks. A mask pairs with the image whose name is the same once
the words image/mask and separators are dropped (``1 Benign Image.bmp`` <-> ``1 Benign Mask.tif``).
The exact file names were not verified (the site is down per CAMMA-public/UltraSam#5).

Label mapping as the released converter: ``breast_nodule`` = grey mask >= 150, one instance per
connected component. Unlike it, the Benign/Malignant folder is kept as the image-level class
label (``benign``/``malignant``) instead of being merged away.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ultrasam_training.data.convert._paired_folders import child, files, loose_key, pair_files, pair_sample
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import convert_samples
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.report import ConversionReport

DATASET = "buid"
CATEGORIES = ("breast_nodule",)
URL = "https://qamebi.com/breast-ultrasound-images-database/"
CLASSES = ("Benign", "Malignant")
THRESHOLD = 150
IMAGE_SUFFIXES = (".bmp",)
MASK_SUFFIXES = (".tif", ".tiff")


def find_root(raw_dir: str | Path) -> Path:
    """The folder holding ``Benign/`` and/or ``Malignant/``: the raw folder or its single sub-folder."""
    raw_dir = Path(raw_dir)
    subdirs = [p for p in sorted(raw_dir.iterdir()) if p.is_dir()] if raw_dir.is_dir() else []
    for candidate in [raw_dir] + (subdirs if len(subdirs) == 1 else []):
        if any(child(candidate, name) is not None for name in CLASSES):
            return candidate
    raise DatasetError(
        f"{raw_dir}: layout not recognised; expected Benign/ and Malignant/ folders of BMP images + TIF masks"
    )


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"threshold": THRESHOLD}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert BUID into ``out_dir``."""
    threshold = options.extras(OPTIONS, DATASET)["threshold"]
    root = find_root(raw_dir)
    report = ConversionReport(DATASET)
    samples = []
    for class_name in CLASSES:
        folder = child(root, class_name)
        if folder is None or not folder.is_dir():
            report.note(f"class folder {class_name}/ is missing")
            continue
        pairs = pair_files(
            files(folder, IMAGE_SUFFIXES),
            files(folder, MASK_SUFFIXES),
            report,
            lambda p: p.relative_to(root).as_posix(),
            loose_key,
        )
        samples += [
            pair_sample(root, image, mask, CATEGORIES[0], threshold, report=report, class_labels=[class_name.lower()])
            for image, mask in pairs
        ]
    return convert_samples(
        DATASET,
        CATEGORIES,
        samples,
        out_dir,
        options,
        description="BUID: Breast Ultrasound Images Database",
        url=URL,
        report=report,
    )
