"""HC18 fetal head circumference (van den Heuvel et al. 2018) -> COCO.

Raw layout: ``training_set/NNN_HC.png`` (or ``NNN_2HC.png`` for a second frame of subject NNN)
with ``NNN_HC_Annotation.png``, the head ellipse drawn as a thin **outline**. The outline is
filled (``scipy.ndimage.binary_fill_holes``) to give one ``fetal_head`` instance. When the ellipse
runs out of the image the outline is open and filling adds nothing; then an ellipse is fitted to
the outline pixels (``skimage.measure.EllipseModel``) and rasterised, and the report says so.
``NNN`` is kept as ``patient_id`` so that frames of one subject never straddle a split. An empty
annotation is excluded unless ``keep_empty=True``, as in every converter.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any, Collection

import numpy as np
from scipy import ndimage
from skimage.measure import EllipseModel

from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples, natural_key, only_requested
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import read_gray_mask
from ultrasam_training.data.report import ConversionReport

DATASET = "hc18"
CATEGORY = "fetal_head"
URL = "https://zenodo.org/records/1327317"
_IMAGE_NAME = re.compile(r"^(?P<subject>\d+)_(?P<frame>\d*)HC$")
#: filling must at least double the outline's pixel count to count as "the outline was closed"
MIN_FILL_GAIN = 2.0


def find_root(raw_dir: str | Path) -> Path:
    """The folder holding ``NNN_HC.png`` files: ``raw_dir`` itself or its ``training_set``."""
    raw_dir = Path(raw_dir)
    for candidate in (raw_dir, raw_dir / "training_set"):
        if candidate.is_dir() and any(candidate.glob("*HC_Annotation.png")):
            return candidate
    raise DatasetError(f"{raw_dir}: no NNN_HC_Annotation.png files (expected training_set/)")


def _fit_ellipse(points_xy: np.ndarray) -> tuple[tuple[float, float], tuple[float, float], float] | None:
    """(center, axis lengths, theta) of the least-squares ellipse through the points, or None."""
    if hasattr(EllipseModel, "from_estimate"):  # scikit-image >= 0.26
        model = EllipseModel.from_estimate(points_xy)
        if not model:
            return None
        return tuple(model.center), tuple(model.axis_lengths), float(model.theta)
    model = EllipseModel()  # pragma: no cover - older scikit-image
    if not model.estimate(points_xy):
        return None
    xc, yc, a, b, theta = model.params
    return (xc, yc), (a, b), theta


def rasterise_ellipse(
    shape: tuple[int, int], center: tuple[float, float], axes: tuple[float, float], theta: float
) -> np.ndarray:
    """Pixels whose centres lie inside the ellipse ((x, y) centre, semi-axes along theta and theta+90deg)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    dx, dy = cols - center[0], rows - center[1]
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    return (u / axes[0]) ** 2 + (v / axes[1]) ** 2 <= 1.0


def fill_outline(outline: np.ndarray) -> tuple[np.ndarray, str]:
    """The filled head region of an outline mask, and how it was obtained (``"fill"`` or ``"ellipse-fit"``)."""
    outline = outline.astype(bool)
    filled = ndimage.binary_fill_holes(outline)
    if filled.sum() >= MIN_FILL_GAIN * outline.sum():
        return filled, "fill"
    rows, cols = np.nonzero(outline)
    fitted = _fit_ellipse(np.column_stack([cols, rows]).astype(float)) if rows.size >= 5 else None
    if fitted is None:
        raise DatasetError("outline is open and no ellipse fits it")
    region = rasterise_ellipse(outline.shape, *fitted) | outline
    if region.sum() < MIN_FILL_GAIN * outline.sum():
        raise DatasetError("outline is open and the fitted ellipse encloses nothing")
    return region, "ellipse-fit"


def _load(image_path: Path, annotation_path: Path, report: ConversionReport) -> Loaded:
    """The image and its filled head; an empty outline stays an empty mask (excluded unless kept)."""
    head = read_gray_mask(annotation_path) > 127
    if head.any():
        head, method = fill_outline(head)
        if method != "fill":
            report.note(f"{image_path.name}: outline leaves the image; head filled from a fitted ellipse")
    return Loaded(image_path, [(CATEGORY, head)], [annotation_path.name])


def _samples(root: Path, report: ConversionReport, only: Collection[str] | None) -> list[Sample]:
    """One sample per ``NNN_HC.png`` (or per name of ``only``); orphan annotations are reported."""
    samples = []
    for image_path in sorted(root.glob("*HC.png"), key=lambda p: natural_key(p.name)):
        match = _IMAGE_NAME.match(image_path.stem)
        if match:
            load = partial(_load, image_path, root / f"{image_path.stem}_Annotation.png", report)
            samples.append(Sample(image_path.name, load, patient_id=match["subject"]))
    known = {sample.source_path for sample in samples}
    for orphan in sorted(root.glob("*HC_Annotation.png")):
        if orphan.name.replace("_Annotation", "") not in known:
            report.skip(orphan.name, "annotation without image")
    return only_requested(samples, only, report)


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"only": None}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert the HC18 training set into ``out_dir``; ``only`` (image names) or ``limit`` convert a subset."""
    only = options.extras(OPTIONS, DATASET)["only"]
    root = find_root(raw_dir)
    report = ConversionReport(DATASET)
    return convert_samples(
        DATASET,
        [CATEGORY],
        _samples(root, report, only),
        out_dir,
        options,
        description="HC18: fetal head circumference",
        url=URL,
        report=report,
    )
