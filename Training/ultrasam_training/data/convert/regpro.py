"""regPro: TRUS volumes of the MR-to-ultrasound prostate registration challenge (mu-RegPro, MICCAI 2023) -> COCO.

Raw layout (``nifti_data`` of Zenodo 7870104): ``{train,val}/us_images/<case>.nii.gz`` with
``{train,val}/us_labels/<case>.nii.gz``; the MR volumes (``mr_images``, ``mr_labels``) are not
used. A label file holds one channel per structure (prostate gland and anatomical landmarks).
The folder is kept as the official split, the case name as patient and case id.

Re-derived slicing: the image is cut into sagittal slices (constant x, ``(z, y)`` planes) and the
label volume into the SAME sagittal slices, channel by channel; both are flipped over both axes
(mmcv's ``diagonal`` flip) as released. Every label channel stays a separate structure of the one
category ``unknown1`` (the released category), so a landmark inside the gland is its own instance
instead of vanishing in a union; ``channels`` restricts them (e.g. ``(0,)``). Slices without any
label voxel are left out unless ``keep_empty=True``.
Released converter: it transposed the label array with ``(3, 0, 1, 2)``: for a channels-last
``(z, y, x, c)`` array (a vector image) that pairs image slice i with label CHANNEL i (the bug the
protocol names); for a plain 4-D NIfTI, which SimpleITK reads as ``(c, z, y, x)``, the same
transpose happens to give the right x slices. This converter matches the label to the image by
shape instead, so both layouts are sliced at the same x as the image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ultrasam_training.data.convert._volume_pairs import (
    MaskList,
    VolumePair,
    convert_pairs,
    find_root,
    nifti_stem,
    pair_files,
)
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.report import ConversionReport

DATASET = "regpro"
CATEGORY = "unknown1"
CATEGORIES = (CATEGORY,)
URL = "https://muregpro.github.io/data.html"
SPLITS = ("train", "val")
EXPECTED = "{train,val}/us_images/<case>.nii.gz + {train,val}/us_labels/<case>.nii.gz, optionally in nifti_data/"


def _files(folder: Path) -> dict[str, Path]:
    return {nifti_stem(p): p for p in folder.glob("*.nii*")} if folder.is_dir() else {}


def _channel_masks(label_slice: np.ndarray) -> MaskList:
    """One ``unknown1`` mask per label channel of a ``(rows, cols, channels)`` slice."""
    return [(CATEGORY, label_slice[..., k] != 0) for k in range(label_slice.shape[-1])]


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"channels": None}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert the mu-RegPro TRUS volumes into ``out_dir``; ``channels`` selects label channels (default all)."""
    channels = options.extras(OPTIONS, DATASET)["channels"]
    root = find_root(raw_dir, ["nifti_data"], lambda p: any((p / s / "us_images").is_dir() for s in SPLITS), EXPECTED)
    report = ConversionReport(DATASET)
    pairs = []
    for split in SPLITS:
        images, labels = _files(root / split / "us_images"), _files(root / split / "us_labels")
        for case, image, label in pair_files(images, labels, root, report):
            pairs.append(
                VolumePair(image, label, image.relative_to(root).as_posix(), patient_id=case, case_id=case, split=split)
            )

    def select_channels(label: np.ndarray, image: np.ndarray) -> np.ndarray:
        stack = label[..., None] if label.ndim == 3 else label
        if channels is None:
            return stack
        if any(not 0 <= k < stack.shape[-1] for k in channels):
            raise DatasetError(f"channels {list(channels)} not all among the label's {stack.shape[-1]} channel(s)")
        return stack[..., list(channels)]

    return convert_pairs(
        DATASET,
        CATEGORIES,
        pairs,
        out_dir,
        options,
        report=report,
        description="mu-RegPro TRUS prostate volumes",
        url=URL,
        expected=EXPECTED,
        fix_label=select_channels,
        masks_of=_channel_masks,
        view="sagittal",
        flip_how="diagonal",
    )
