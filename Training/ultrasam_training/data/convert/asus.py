"""ASUS, spine ultrasound for scoliosis (Ungi et al. 2020, PMC7654705) -> COCO.

Raw layout: the numpy arrays of ``ASUS/DataArrays.zip``, extracted (found recursively)::

    <patient>_ultrasound.npy     # (N, H, W[, 1]) float, pixel values 0..1
    <patient>_segmentation.npy   # (N, H, W[, 1]) 0/1 spine mask

Arrays pair by the name part before the first ``_`` (the patient id); a file whose name contains
``segmentation`` is the mask (as the released converter). Each slice is one image
(``source_path`` ``<file>#slice=<i>``, ``slice`` kept): pixels x255 to 8 bit (a fixed scale, so
slices stay comparable), mask value 1 = ``spine``, one instance per connected component
(vertebrae separate); other mask values are reported. Slices without spine are left out unless
``keep_empty=True``, as the released converter.

Orientation: the released converter transposed image and mask (mmcv diagonal flip). Kept by
default (``transpose=True``) so the images have the orientation UltraSam was trained on; image and
mask are transposed together, so the annotations stay correct either way, and ``transpose=False``
gives the arrays' stored orientation.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import (
    READ_ERRORS,
    Loaded,
    Sample,
    convert_samples,
    natural_key,
    unmapped_values,
)
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.report import ConversionReport

DATASET = "asus"
CATEGORIES = ("spine",)
LABELS = {1: "spine"}
URL = "https://pmc.ncbi.nlm.nih.gov/articles/PMC7654705/"


def find_pairs(raw_dir: str | Path) -> dict[str, dict[str, Path]]:
    """``{patient: {"image": path, "mask": path}}`` of every ``.npy`` under ``raw_dir``."""
    raw_dir = Path(raw_dir)
    files = sorted(raw_dir.rglob("*.npy")) if raw_dir.is_dir() else []
    if not files:
        zipped = sorted(p.name for p in raw_dir.rglob("*.zip")) if raw_dir.is_dir() else []
        hint = f" (found {', '.join(zipped)}: extract DataArrays.zip first)" if zipped else ""
        raise DatasetError(f"{raw_dir}: no <patient>_ultrasound.npy / <patient>_segmentation.npy arrays{hint}")
    pairs: dict[str, dict[str, Path]] = defaultdict(dict)
    for path in files:
        pairs[path.stem.split("_")[0]]["mask" if "segmentation" in path.name else "image"] = path
    return dict(pairs)


def _slice(array: np.ndarray, index: int, transpose: bool) -> np.ndarray:
    plane = np.asarray(array[index])
    if plane.ndim == 3 and plane.shape[-1] == 1:
        plane = plane[..., 0]
    return plane.T if transpose and plane.ndim == 2 else plane


def _to_uint8(plane: np.ndarray) -> np.ndarray:
    """Pixels 0..1 -> 0..255 (integer arrays are taken as 8-bit already)."""
    if np.issubdtype(plane.dtype, np.integer):
        return np.clip(plane, 0, 255).astype(np.uint8)
    return np.rint(np.clip(np.nan_to_num(plane.astype(np.float32)), 0.0, 1.0) * 255.0).astype(np.uint8)


def _samples(raw_dir: Path, pairs: dict[str, dict[str, Path]], transpose: bool, report: ConversionReport):
    for patient in sorted(pairs, key=natural_key):
        files = pairs[patient]
        name = str(files.get("image", files.get("mask")).relative_to(raw_dir))
        if set(files) != {"image", "mask"}:
            report.skip(name, f"no {'segmentation' if 'mask' not in files else 'ultrasound'} array for {patient}")
            continue
        try:
            images, masks = np.load(files["image"], mmap_mode="r"), np.load(files["mask"], mmap_mode="r")
        except READ_ERRORS as exc:
            report.skip(name, f"cannot read the arrays: {exc}")
            continue
        if images.ndim not in (3, 4) or len(images) != len(masks):
            report.skip(name, f"image array {images.shape} and mask array {masks.shape} do not pair slice by slice")
            continue
        extra = unmapped_values(np.asarray(masks), LABELS)
        if extra:
            report.note(f"{name}: mask values {extra} are not spine (1); left out")
        for index in range(len(images)):
            yield Sample(
                f"{name}#slice={index}",
                lambda i=index, images=images, masks=masks: Loaded(
                    _to_uint8(_slice(images, i, transpose)), [("spine", _slice(masks, i, transpose) == 1)]
                ),
                patient_id=patient,
                extra={"slice": index},
            )


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"transpose": True}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert ASUS into ``out_dir`` (see the module docstring)."""
    transpose = options.extras(OPTIONS, DATASET)["transpose"]
    pairs = find_pairs(raw_dir)
    report = ConversionReport(DATASET)
    return convert_samples(
        DATASET,
        CATEGORIES,
        _samples(Path(raw_dir), pairs, transpose, report),
        out_dir,
        options,
        description="ASUS: spine ultrasound segmentation",
        url=URL,
        report=report,
        unit="slice",
    )
