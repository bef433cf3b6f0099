"""MUP: micro-ultrasound prostate segmentation (Jiang et al., CMIG 2024; Zenodo 10475293) -> COCO.

Duplicate source: MUP and MicroSeg (``microseg.py``) are two released converters of the SAME
Zenodo record; convert one of them only, or the same slices enter training twice.

Raw layout and pairing: as ``microseg`` (``{train,test}/micro_ultrasound_scans`` +
``expert_annotations``, matched by split and number, official split kept, patient id
``<split>_<NN>``). The MUP way, as released: axial slices, label 1 ``prostate``, label voxels on
a line of the volume that is zero along its whole length (any axis) are zeroed, and image and mask
are flipped vertically. The released converter kept every slice, empty ones included; here only
annotated slices are kept unless ``keep_empty=True``.
Bugs fixed: its ``"expert_annotation_train" in path`` test also matched the non-expert
annotations, so a scan could be paired with the non-expert mask; intensities were cast with
``astype(uint8)`` where this windows them once per volume; one COCO file per patient is now one file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ultrasam_training.data.convert._volume_pairs import convert_pairs
from ultrasam_training.data.convert.microseg import CATEGORIES, EXPECTED, MAPPING, URL, micro_us_pairs
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.report import ConversionReport

DATASET = "mup"
__all__ = ["CATEGORIES", "DATASET", "URL", "convert"]


def _zero_background(label: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Zero label voxels that lie on an all-zero line of the image along x, y or z."""
    background = np.zeros(image.shape, bool)
    for axis in range(3):
        background |= ~np.any(image != 0, axis=axis, keepdims=True)
    return np.where(background, 0, label)


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert the micro-US prostate volumes the MUP way into ``out_dir``."""
    report = ConversionReport(DATASET)
    pairs = micro_us_pairs(raw_dir, report)
    return convert_pairs(
        DATASET,
        CATEGORIES,
        pairs,
        out_dir,
        options,
        report=report,
        description="MUP micro-ultrasound prostate",
        url=URL,
        expected=EXPECTED,
        mapping=MAPPING,
        flip_how="vertical",
        fix_label=_zero_background,
    )
