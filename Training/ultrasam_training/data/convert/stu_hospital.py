"""STU-Hospital breast ultrasound tumours (github.com/xbhlk/STU-Hospital) -> COCO.

Raw layout: ``Hospital/Test_Image_<n>.png`` with ``Hospital/mask_<n>.png`` in the same folder
(42 images); the raw folder may be the repository checkout or ``Hospital/`` itself.

Label mapping as the released converter: ``benign_tumour`` = mask value 255 (255 -> 1), one
instance per connected component; a mask of another size than its image is resized to it by
nearest neighbour, as the released converter did, but each such pair is now named in the report,
as are non-zero mask values below 255.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ultrasam_training.data.convert._paired_folders import child, files, pair_files, pair_sample
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import convert_samples
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.report import ConversionReport

DATASET = "stu_hospital"
CATEGORIES = ("benign_tumour",)
URL = "https://github.com/xbhlk/STU-Hospital"
THRESHOLD = 255
_NAME = re.compile(r"^(?:test_image|mask)_(?P<number>\d+)$", re.IGNORECASE)


def _number(path: Path) -> str | None:
    match = _NAME.match(path.stem)
    return str(int(match["number"])) if match else None


def find_root(raw_dir: str | Path) -> Path:
    """The folder of ``Test_Image_<n>.png`` + ``mask_<n>.png``: the raw folder or its ``Hospital/``."""
    raw_dir = Path(raw_dir)
    for candidate in (raw_dir, child(raw_dir, "Hospital"), child(raw_dir, "STU-Hospital/Hospital")):
        if candidate is not None and candidate.is_dir() and any(candidate.glob("[Mm]ask_*.png")):
            return candidate
    raise DatasetError(
        f"{raw_dir}: layout not recognised; expected Hospital/Test_Image_<n>.png + Hospital/mask_<n>.png"
    )


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"threshold": THRESHOLD}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert STU-Hospital into ``out_dir``."""
    threshold = options.extras(OPTIONS, DATASET)["threshold"]
    root = find_root(raw_dir)
    report = ConversionReport(DATASET)
    pngs = files(root, (".png",))
    masks = [p for p in pngs if p.stem.lower().startswith("mask_")]
    images = [p for p in pngs if p not in masks]
    pairs = pair_files(images, masks, report, lambda p: p.relative_to(root).as_posix(), _number)
    samples = [
        pair_sample(root, image, mask, CATEGORIES[0], threshold, report=report, note_below=True, resize=True)
        for image, mask in pairs
    ]
    return convert_samples(
        DATASET,
        CATEGORIES,
        samples,
        out_dir,
        options,
        description="STU-Hospital breast ultrasound",
        url=URL,
        report=report,
    )
