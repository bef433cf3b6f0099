"""105US ultrasound tumours ("100 2D US Images and Tumor Segmentation Masks", ResearchGate) -> COCO.

Raw layout (not verified against the download, which needs a ResearchGate account): an image
folder and a mask folder side by side, in the raw folder or in its single sub-folder; the mask
folder is the one whose name says mask/label/GT/segmentation, unless ``image_dir``/``mask_dir``
(paths relative to the raw folder) name them. Files pair by name, role words ignored
(``12.png`` <-> ``12.png``, ``img_12.png`` <-> ``mask_12.png``).

Label mapping as the released converter: ``tumor`` = mask value 255 (``mask // 255``), one
instance per connected component. Unlike it, non-zero values below 255 are not dropped silently
(the report names them); images with empty masks are excluded and counted (``keep_empty`` keeps them).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ultrasam_training.data.convert._paired_folders import child, files, folder_samples, loose_key
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import convert_samples
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.report import ConversionReport

DATASET = "105us"
CATEGORIES = ("tumor",)
URL = "https://www.researchgate.net/publication/329586355_100_2D_US_Images_and_Tumor_Segmentation_Masks"
THRESHOLD = 255
_MASK_FOLDER = re.compile(r"mask|label|gt|segment|annot", re.IGNORECASE)


def find_folders(
    raw_dir: str | Path, image_dir: str | None = None, mask_dir: str | None = None
) -> tuple[Path, Path, Path]:
    """``(root, image folder, mask folder)``: given by name, or the two image folders of the raw folder."""
    raw_dir = Path(raw_dir)
    if image_dir or mask_dir:
        found = [child(raw_dir, name) if name else None for name in (image_dir, mask_dir)]
        if None in found or not all(p.is_dir() for p in found):
            raise DatasetError(f"{raw_dir}: give both image_dir and mask_dir as existing sub-folders")
        return raw_dir, found[0], found[1]
    subdirs = [p for p in sorted(raw_dir.iterdir()) if p.is_dir()] if raw_dir.is_dir() else []
    for root in [raw_dir] + (subdirs if len(subdirs) == 1 else []):
        folders = [p for p in sorted(root.iterdir()) if p.is_dir() and files(p)]
        masks = [p for p in folders if _MASK_FOLDER.search(p.name)]
        images = [p for p in folders if p not in masks]
        if len(masks) == 1 and len(images) == 1:
            return root, images[0], masks[0]
    raise DatasetError(
        f"{raw_dir}: expected one image folder and one mask folder (named mask/label/GT...) of PNG files; "
        "name them with image_dir=/mask_dir="
    )


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"image_dir": None, "mask_dir": None, "threshold": THRESHOLD}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert 105US into ``out_dir``."""
    image_dir, mask_dir, threshold = options.extras(OPTIONS, DATASET).values()
    root, images, masks = find_folders(raw_dir, image_dir, mask_dir)
    report = ConversionReport(DATASET)
    samples = folder_samples(root, images, masks, CATEGORIES[0], threshold, report, key=loose_key, note_below=True)
    return convert_samples(
        DATASET,
        CATEGORIES,
        samples,
        out_dir,
        options,
        description="105US: 2D breast US images and tumour masks",
        url=URL,
        report=report,
    )
