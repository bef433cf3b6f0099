"""BUS Dataset B (Yap et al. 2018, UDIAT Diagnostic Centre, Sabadell) -> COCO.

Raw layout: ``original/NNNNNN.png`` images and ``GT/NNNNNN.png`` masks (163 lesions), in the raw
folder or under ``BUS/``, ``Dataset_B/`` or ``Dataset B/BUS/``; ``DatasetB.xlsx`` beside them
lists benign/malignant per image but is not read (no spreadsheet reader here), which the report says.

Label mapping as the released converter: ``breast_nodule`` = grey mask >= 150, one instance per
connected component. Pairs are matched by file name, not by position in two sorted lists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ultrasam_training.data.convert._paired_folders import child, find_root, folder_samples
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import convert_samples
from ultrasam_training.data.report import ConversionReport

DATASET = "bus_b"
CATEGORIES = ("breast_nodule",)
URL = "http://www2.docm.mmu.ac.uk/STAFF/M.Yap/dataset.php"
THRESHOLD = 150
PREFIXES = ("", "BUS", "Dataset_B", "Dataset B", "DatasetB", "Dataset B/BUS", "Dataset_B/BUS")


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"threshold": THRESHOLD}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert BUS Dataset B into ``out_dir``."""
    threshold = options.extras(OPTIONS, DATASET)["threshold"]
    root = find_root(raw_dir, ("original", "GT"), PREFIXES, "original/ and GT/ folders of PNG files (Dataset_B/)")
    report = ConversionReport(DATASET)
    if child(root, "DatasetB.xlsx") is not None:
        report.note("DatasetB.xlsx (benign/malignant per image) is not read: images carry no class label")
    samples = folder_samples(root, child(root, "original"), child(root, "GT"), CATEGORIES[0], threshold, report)
    return convert_samples(
        DATASET,
        CATEGORIES,
        samples,
        out_dir,
        options,
        description="BUS Dataset B (UDIAT)",
        url=URL,
        report=report,
    )
