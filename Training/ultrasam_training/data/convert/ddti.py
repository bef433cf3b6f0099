"""DDTI thyroid nodules (Pedraza et al. 2015), as re-packaged in the "Thyroid Dataset" archive -> COCO.

Raw layout (the archive shared with TG3K/TN3K): ``DDTI/2_preprocessed_data/stage1/p_image/`` and
``.../p_mask/`` hold PNG images and masks of the same name, which the released converter used
(``stage="stage1"``); ``stage="original"`` reads ``DDTI/1_or_data/image/`` + ``mask/`` instead.
The raw folder may be ``DDTI/`` itself or the archive folder holding it.

Label mapping as the released converter: ``thyroid_nodule`` = mask value 255 (255 -> 1), one
instance per connected component; other non-zero values are named in the report. The
``category.csv``/``train.csv`` classes are left out: the re-packagers' readme says they are forged.
Images were renumbered by the re-packagers, so no patient id is known.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ultrasam_training.data.convert._paired_folders import child, find_root, folder_samples
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import convert_samples
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.report import ConversionReport

DATASET = "ddti"
CATEGORIES = ("thyroid_nodule",)
URL = "http://cimalab.intec.co/applications/thyroid/"
THRESHOLD = 255
STAGES = {
    "stage1": ("2_preprocessed_data/stage1/p_image", "2_preprocessed_data/stage1/p_mask"),
    "original": ("1_or_data/image", "1_or_data/mask"),
}
PREFIXES = ("", "DDTI", "Thyroid Dataset/DDTI")


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"stage": "stage1", "threshold": THRESHOLD}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert DDTI (``stage1`` preprocessed images, or the ``original`` ones) into ``out_dir``."""
    stage, threshold = options.extras(OPTIONS, DATASET).values()
    if stage not in STAGES:
        raise DatasetError(f"stage must be one of {sorted(STAGES)}, not {stage!r}")
    image_dir, mask_dir = STAGES[stage]
    root = find_root(raw_dir, (image_dir, mask_dir), PREFIXES, f"DDTI/{image_dir}/ and DDTI/{mask_dir}/")
    report = ConversionReport(DATASET)
    samples = folder_samples(
        root, child(root, image_dir), child(root, mask_dir), CATEGORIES[0], threshold, report, note_below=True
    )
    return convert_samples(
        DATASET,
        CATEGORIES,
        samples,
        out_dir,
        options,
        description="DDTI: Digital Database of Thyroid Ultrasound Images",
        url=URL,
        report=report,
    )
