"""FH-PS-AOP intrapartum transperineal ultrasound (pubic symphysis and fetal head; MICCAI 2023 challenge) -> COCO.

Raw layout (the public training set): ``image_mha/<NNNNN>.mha`` with ``label_mha/<NNNNN>.mha``,
in the raw folder or one folder below it. The image file holds the grey picture repeated in
planes (``(3, h, w)``, or ``(h, w, 3)`` vector pixels); its first plane is the image, as in the
released converter. Labels: 1 pubic_symphysis, 2 fetal_head; other values are reported.
Case id: the file number. Left out on purpose: the released converter's field-of-view heuristic
(labels outside the convex hull of the largest non-zero image region, after a 12x12 opening,
were zeroed): the masks are kept as annotated.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from ultrasam_training.data.convert._volume_pairs import category_masks, find_root, pair_files
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples, unmapped_values
from ultrasam_training.data.convert.volumes import read_volume, window_to_uint8
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.report import ConversionReport

DATASET = "fh_ps_aop"
CATEGORIES = ("pubic_symphysis", "fetal_head")
URL = "https://ps-fh-aop-2023.grand-challenge.org/"
MAPPING = {1: "pubic_symphysis", 2: "fetal_head"}
EXPECTED = "image_mha/<NNNNN>.mha + label_mha/<NNNNN>.mha"


def _first_plane(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The 2-D plane of ``image`` of size ``shape``: first of the leading axis, else first component."""
    if image.shape[1:3] == shape:
        return image[0] if image.ndim == 3 else image[0, ..., 0]
    if image.ndim == 3 and image.shape[:2] == shape:
        return image[..., 0]
    raise DatasetError(f"image array {image.shape} has no plane of the label's size {shape}")


def _load(image_path: Path, label_path: Path | None, source: str, report: ConversionReport) -> Loaded:
    if label_path is None:
        raise DatasetError(f"no label_mha/{image_path.name}")
    label = read_volume(label_path)
    if label.shape[0] != 1 or label.ndim != 3:
        raise DatasetError(f"label array {label.shape} is not one 2-D plane")
    label = label[0]
    if values := unmapped_values(label, MAPPING):
        report.note(f"{source}: label value(s) {values} map to no category (left out)")
    plane = _first_plane(read_volume(image_path), label.shape)
    return Loaded(window_to_uint8(plane), category_masks(label, MAPPING))


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert FH-PS-AOP into ``out_dir`` (one image per case)."""
    raw = Path(raw_dir)
    children = sorted(p.name for p in raw.iterdir() if p.is_dir()) if raw.is_dir() else []
    root = find_root(raw, children, lambda p: (p / "image_mha").is_dir(), EXPECTED)
    report = ConversionReport(DATASET)
    images = {p.stem: p for p in (root / "image_mha").glob("*.mha")}
    labels = {p.stem: p for p in (root / "label_mha").glob("*.mha")} if (root / "label_mha").is_dir() else {}
    samples = [
        Sample(f"image_mha/{image.name}", partial(_load, image, label, f"image_mha/{image.name}", report), case_id=key)
        for key, image, label in pair_files(images, labels, root, report)
    ]
    if not samples:
        raise DatasetError(f"{root}: no image_mha/*.mha (expected {EXPECTED})")
    return convert_samples(
        DATASET,
        CATEGORIES,
        samples,
        out_dir,
        options,
        description="FH-PS-AOP pubic symphysis and fetal head",
        url=URL,
        report=report,
    )
