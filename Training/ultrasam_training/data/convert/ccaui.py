"""CCAUI, Common Carotid Artery Ultrasound Images (Momot 2022, Mendeley Data d4xt63mgjm) -> COCO.

Raw layout: ``Common Carotid Artery Ultrasound Images/US images/<name>.png`` and
``.../Expert mask images/<name>.png`` (same file name), 1100 images of 11 subjects. When a name
has the form ``<recording>_slice_<n>`` the recording prefix is kept as ``patient_id`` so that the
frames of one recording never straddle a split (the data set does not map recordings to subjects).

Label mapping as the released converter: ``carotid_artery`` = mask value 255 (``mask // 255``), one
instance per connected component; other non-zero values are named in the report, not dropped silently.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ultrasam_training.data.convert._paired_folders import child, find_root, folder_samples
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import convert_samples
from ultrasam_training.data.report import ConversionReport

DATASET = "ccaui"
CATEGORIES = ("carotid_artery",)
URL = "https://data.mendeley.com/datasets/d4xt63mgjm/1"
THRESHOLD = 255
IMAGE_DIR, MASK_DIR = "US images", "Expert mask images"
_RECORDING = re.compile(r"^(?P<recording>.+?)_slice_\d+$", re.IGNORECASE)


def _fields(image: Path) -> dict:
    match = _RECORDING.match(image.stem)
    return {"patient_id": match["recording"]} if match else {}


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"threshold": THRESHOLD}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert CCAUI into ``out_dir``."""
    threshold = options.extras(OPTIONS, DATASET)["threshold"]
    root = find_root(
        raw_dir,
        (IMAGE_DIR, MASK_DIR),
        ("", "Common Carotid Artery Ultrasound Images"),
        f"'{IMAGE_DIR}/' and '{MASK_DIR}/' (Common Carotid Artery Ultrasound Images/)",
    )
    report = ConversionReport(DATASET)
    samples = folder_samples(
        root,
        child(root, IMAGE_DIR),
        child(root, MASK_DIR),
        CATEGORIES[0],
        threshold,
        report,
        note_below=True,
        fields=_fields,
    )
    return convert_samples(
        DATASET,
        CATEGORIES,
        samples,
        out_dir,
        options,
        description="CCAUI: Common Carotid Artery Ultrasound Images",
        url=URL,
        report=report,
    )
