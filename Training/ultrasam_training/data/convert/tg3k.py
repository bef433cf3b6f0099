"""TG3K thyroid gland (Gong et al. 2023, TRFE-Net repository; "Thyroid Dataset" archive) -> COCO.

Raw layout: ``tg3k/thyroid-image/NNNN.jpg`` with ``tg3k/thyroid-mask/NNNN.jpg`` (same name) and
``tg3k/tg3k-trainval.json`` (``{"train": [...], "val": [...]}``, indices into the image names in
numeric order, as the TRFE-Net loader reads them). The raw folder may be ``tg3k/`` or the archive
folder holding it.

Label mapping as the released converter: ``thyroid_gland`` = grey mask >= 150 (JPEG masks), one
instance per connected component. New: the official train/val split of the JSON is kept as
``split`` (an index it names that is not there is reported). The frames come from 16 videos with no
video id in the file names, so no patient id is known.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ultrasam_training.data.convert._paired_folders import child, files, find_root, folder_samples
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import convert_samples
from ultrasam_training.data.jsonio import read_json
from ultrasam_training.data.report import ConversionReport

DATASET = "tg3k"
CATEGORIES = ("thyroid_gland",)
URL = "https://github.com/haifangong/TRFE-Net-for-thyroid-nodule-segmentation"
THRESHOLD = 150
IMAGE_DIR, MASK_DIR, SPLIT_FILE = "thyroid-image", "thyroid-mask", "tg3k-trainval.json"


def official_splits(root: Path, images: list[Path], report: ConversionReport) -> dict[Path, str]:
    """``{image: "train"|"val"}`` from ``tg3k-trainval.json`` (indices into the numerically sorted names)."""
    path = child(root, SPLIT_FILE)
    if path is None:
        report.note(f"{SPLIT_FILE} not found: images carry no official split")
        return {}
    lists = read_json(path)
    splits: dict[Path, str] = {}
    for split in ("train", "val"):
        for index in lists.get(split, []) if isinstance(lists, dict) else []:
            if isinstance(index, int) and 0 <= index < len(images):
                splits[images[index]] = split
            else:
                report.note(f"{SPLIT_FILE}: {split} index {index!r} names no image ({len(images)} images)")
    return splits


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"threshold": THRESHOLD}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert TG3K into ``out_dir``."""
    threshold = options.extras(OPTIONS, DATASET)["threshold"]
    root = find_root(
        raw_dir,
        (IMAGE_DIR, MASK_DIR),
        ("", "tg3k", "Thyroid Dataset/tg3k"),
        f"tg3k/{IMAGE_DIR}/ and tg3k/{MASK_DIR}/ (+ {SPLIT_FILE})",
    )
    report = ConversionReport(DATASET)
    image_dir = child(root, IMAGE_DIR)
    splits = official_splits(root, files(image_dir), report)
    samples = folder_samples(
        root,
        image_dir,
        child(root, MASK_DIR),
        CATEGORIES[0],
        threshold,
        report,
        fields=lambda image: {"split": splits.get(image)},
    )
    return convert_samples(
        DATASET,
        CATEGORIES,
        samples,
        out_dir,
        options,
        description="TG3K: thyroid gland segmentation",
        url=URL,
        report=report,
    )
