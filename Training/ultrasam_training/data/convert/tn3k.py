"""TN3K thyroid nodules (Gong et al. 2021, TRFE-Net repository; "Thyroid Dataset" archive) -> COCO.

Raw layout: ``tn3k/trainval-image/NNNN.jpg`` + ``tn3k/trainval-mask/NNNN.jpg`` (2879) and
``tn3k/test-image/`` + ``tn3k/test-mask/`` (614), masks named as their images; optional
``label4trainval.csv``/``label4test.csv`` (``name,0|1`` rows, 0 benign, 1 malignant) give the
image-level class labels. The raw folder may be ``tn3k/`` or the archive folder holding it.

Label mapping as the released converter: ``thyroid_nodule`` = grey mask >= 150 (JPEG masks), one
instance per connected component. Fixed: the released converter merged the official test images
into the training file; here they keep ``split="test"`` (trainval images ``split="train"``), and
``source_path`` keeps their folder since both folders reuse the names 0000.jpg, 0001.jpg, ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ultrasam_training.data.convert._paired_folders import child, find_root, folder_samples, id_key, read_class_csv
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import convert_samples
from ultrasam_training.data.report import ConversionReport

DATASET = "tn3k"
CATEGORIES = ("thyroid_nodule",)
URL = "https://github.com/haifangong/TRFE-Net-for-thyroid-nodule-segmentation"
THRESHOLD = 150
PARTS = {"trainval": "train", "test": "test"}  #: folder prefix -> split
CLASSES = {0: "benign", 1: "malignant"}


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"threshold": THRESHOLD}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert TN3K (trainval and test) into ``out_dir``."""
    threshold = options.extras(OPTIONS, DATASET)["threshold"]
    root = find_root(
        raw_dir,
        ("trainval-image", "trainval-mask"),
        ("", "tn3k", "Thyroid Dataset/tn3k"),
        "tn3k/trainval-image/ + trainval-mask/ (and test-image/ + test-mask/)",
    )
    report = ConversionReport(DATASET)
    samples = []
    for part, split in PARTS.items():
        image_dir, mask_dir = child(root, f"{part}-image"), child(root, f"{part}-mask")
        if image_dir is None or mask_dir is None:
            report.note(f"{part}-image/ or {part}-mask/ is missing: no {split} images")
            continue
        csv_path = child(root, f"label4{part}.csv")
        labels = read_class_csv(csv_path, CLASSES, report) if csv_path is not None else {}

        def fields(image: Path, split: str = split, labels: dict = labels) -> dict:
            label = labels.get(id_key(image.name))
            return {"split": split, "class_labels": [label] if label else []}

        samples += folder_samples(root, image_dir, mask_dir, CATEGORIES[0], threshold, report, fields=fields)
    return convert_samples(
        DATASET,
        CATEGORIES,
        samples,
        out_dir,
        options,
        description="TN3K: thyroid nodule segmentation",
        url=URL,
        report=report,
    )
