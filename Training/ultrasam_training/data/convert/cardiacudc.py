"""CardiacUDC multi-site apical four-chamber echocardiography (GraphEcho, ICCV 2023) -> COCO.

Raw layout (``cardiacUDC_dataset``, after extracting the split archives of the release; this
converter reads ``.nii.gz`` files only and says so when it finds only archives):
``<site folder>/<name>_image.nii.gz`` with ``<name>_label.nii.gz`` next to it, e.g.
``Site_G_100/patient-67-4_image.nii.gz``; every folder under the root is searched.
Frames (axis 0 = time) become images. Labels 1-6: left_ventricle, left_atrium, right_atrium,
right_ventricle, epicardium, left_ventricle_2; holes are filled per label and frames whose
foreground covers less than ``min_foreground`` (2.5 %, the released converter's threshold) of
the frame are left out and reported. Image and mask are flipped over both axes (mmcv's
``diagonal`` flip) as released. Patient id ``<site folder>/<name up to the view suffix>``
(``Site_G_100/patient-67``); a ``normal-``/``patient-`` file name prefix is kept as class label.
Unlike the released converter intensities are windowed once per sequence.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import binary_fill_holes

from ultrasam_training.data.convert._volume_pairs import MaskList, VolumePair, convert_pairs, find_root
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.report import ConversionReport

DATASET = "cardiacudc"
CATEGORIES = ("left_ventricle", "left_atrium", "right_atrium", "right_ventricle", "epicardium", "left_ventricle_2")
URL = "https://www.kaggle.com/datasets/xiaoweixumedicalai/cardiacudc-dataset"
MAPPING = dict(enumerate(CATEGORIES, start=1))
MIN_FOREGROUND = 0.025
EXPECTED = "<site>/<name>_image.nii.gz + <name>_label.nii.gz, optionally inside cardiacUDC_dataset/"
_NAME = re.compile(r"^(?P<patient>(?P<group>normal|patient)?[-_]?\d+|.+?)(?:-\d+)?_image\.nii\.gz$")


def _holds_sequences(folder: Path) -> bool:
    return any(folder.glob("*_image.nii.gz")) or any(folder.glob("*/*_image.nii.gz"))


def _filled_masks(label_slice: np.ndarray) -> MaskList:
    return [(name, binary_fill_holes(label_slice == value)) for value, name in MAPPING.items()]


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"min_foreground": MIN_FOREGROUND}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert CardiacUDC sequences into ``out_dir``; ``min_foreground=0`` keeps every annotated frame."""
    min_foreground = options.extras(OPTIONS, DATASET)["min_foreground"]
    try:
        root = find_root(raw_dir, ["cardiacUDC_dataset"], _holds_sequences, EXPECTED)
    except DatasetError as exc:
        archives = sorted(p.name for p in Path(raw_dir).rglob("*") if re.search(r"\.(7z|zip|z\d+|\d{3})$", p.name))
        if archives:
            raise DatasetError(f"{exc}; only archives found ({', '.join(archives[:4])}): extract them first") from None
        raise
    if not 0 <= min_foreground < 1:
        raise DatasetError(f"min_foreground is a fraction of the frame in [0, 1), not {min_foreground}")
    report = ConversionReport(DATASET)
    pairs = []
    for image in sorted(root.rglob("*_image.nii.gz")):
        label = image.with_name(image.name.replace("_image.nii.gz", "_label.nii.gz"))
        match = _NAME.match(image.name)
        folder = image.parent.relative_to(root).as_posix()
        patient = f"{folder}/{match['patient']}" if folder != "." else match["patient"]
        pairs.append(
            VolumePair(
                image,
                label if label.is_file() else None,
                image.relative_to(root).as_posix(),
                patient_id=patient,
                case_id=image.name[: -len("_image.nii.gz")],
                class_labels=(match["group"],) if match["group"] else (),
            )
        )

    def too_small(label_slice: np.ndarray) -> str | None:
        if np.count_nonzero(label_slice) < min_foreground * label_slice.size:
            return f"foreground under {min_foreground:.1%} of the frame (min_foreground)"
        return None

    return convert_pairs(
        DATASET,
        CATEGORIES,
        pairs,
        out_dir,
        options,
        report=report,
        description="CardiacUDC echocardiography sequences",
        url=URL,
        expected=EXPECTED,
        mapping=MAPPING,
        masks_of=_filled_masks,
        unit="frame",
        flip_how="diagonal",
        drop_slice=too_small,
    )
