"""TN-SCUI 2020 thyroid nodules (MICCAI 2020 challenge, Zhou et al., Ruijin Hospital) -> COCO.

Raw layout: the challenge training set ``TNSCUI2020_train/image/NNNN.PNG`` with
``TNSCUI2020_train/mask/NNNN.PNG`` (same name) and ``train.csv`` (``ID,CATE`` rows, 0 benign,
1 malignant), or the VOC-style re-packaging the released converter read (``JPEGImages/*.jpg`` +
``SegmentationClass/*.png``). The raw folder may hold ``TNSCUI2020_train/`` or be it.

Label mapping: ``thyroid_nodule`` = every non-zero mask pixel, one instance per connected
component. Fixed: the released converter kept only the value 1, so masks stored as 0/255 (as the
challenge release stores them) would come out empty; here 1 and 255 (any non-zero value) both count. ``CATE`` is
kept as the image-level class label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ultrasam_training.data.convert._paired_folders import child, find_root, folder_samples, id_key, read_class_csv
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import convert_samples
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.report import ConversionReport

DATASET = "tnscui"
CATEGORIES = ("thyroid_nodule",)
URL = "https://tn-scui2020.grand-challenge.org/"
THRESHOLD = 1
LAYOUTS = (("image", "mask"), ("JPEGImages", "SegmentationClass"))
PREFIXES = ("", "TNSCUI2020_train", "tn-scui2020/TNSCUI2020_train")
CLASSES = {0: "benign", 1: "malignant"}


def find_layout(raw_dir: str | Path) -> tuple[Path, Path, Path]:
    """``(root, image folder, mask folder)`` of either published layout."""
    for image_dir, mask_dir in LAYOUTS:
        try:
            root = find_root(raw_dir, (image_dir, mask_dir), PREFIXES, "")
        except DatasetError:
            continue
        return root, child(root, image_dir), child(root, mask_dir)
    raise DatasetError(
        f"{raw_dir}: layout not recognised; expected TNSCUI2020_train/image/ + mask/ (+ train.csv) "
        "or JPEGImages/ + SegmentationClass/"
    )


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"threshold": THRESHOLD}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert the TN-SCUI 2020 training set into ``out_dir``."""
    threshold = options.extras(OPTIONS, DATASET)["threshold"]
    root, image_dir, mask_dir = find_layout(raw_dir)
    report = ConversionReport(DATASET)
    csv_path = child(root, "train.csv")
    labels = read_class_csv(csv_path, CLASSES, report) if csv_path is not None else {}

    def fields(image: Path) -> dict:
        label = labels.get(id_key(image.name))
        return {"class_labels": [label] if label else []}

    samples = folder_samples(root, image_dir, mask_dir, CATEGORIES[0], threshold, report, fields=fields)
    return convert_samples(
        DATASET,
        CATEGORIES,
        samples,
        out_dir,
        options,
        description="TN-SCUI 2020: thyroid nodule segmentation",
        url=URL,
        report=report,
    )
