"""Stanford Thyroid Ultrasound Cine-clip (Stanford AIMI, 167 patients, 192 nodules) -> COCO.

Raw layout (``thyroidultrasoundcineclip/``): ``dataset.hdf5`` with the datasets ``image`` and
``mask`` (frames ``(n, h, w)``, mask 0/255), ``annot_id`` (``b"<patient>_"...``) and ``frame_num``,
plus optionally ``metadata.csv`` (one row per ``annot_id``, with ``ti-rads_level``). Every frame
with a mask becomes an image; mask != 0 is the ``thyroid`` (nodule) category with its holes
filled, as in the released converter. Unlike the released converter, the patient id (the
``annot_id`` up to its first ``_``), the case id (``annot_id``), the clip frame number (``frame``)
and the TI-RADS level (class label ``TR<n>``, from metadata.csv) are kept, and frames without
mask are left out unless ``keep_empty=True``. Needs ``h5py``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Iterator

import numpy as np
from scipy.ndimage import binary_fill_holes

from ultrasam_training.data.convert._tracings import read_csv_rows
from ultrasam_training.data.convert._volume_pairs import find_root
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.report import ConversionReport

DATASET = "thyroid_cineclip"
CATEGORIES = ("thyroid",)
URL = "https://stanfordaimi.azurewebsites.net/datasets/a72f2b02-7b53-4c5d-963c-d7253220bfd5"
HDF5 = "dataset.hdf5"
EXPECTED = (
    f"{HDF5} (datasets image, mask, annot_id, frame_num) + metadata.csv, optionally inside thyroidultrasoundcineclip/"
)


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _tirads(root: Path, report: ConversionReport) -> dict[str, str]:
    """annot_id -> ``TR<level>`` from metadata.csv (empty when it is absent)."""
    path = root / "metadata.csv"
    if not path.is_file():
        report.note("metadata.csv not found: no TI-RADS class labels")
        return {}
    rows = read_csv_rows(path, ("annot_id", "ti-rads_level"))
    return {row["annot_id"]: f"TR{row['ti-rads_level']}" for row in rows if row["ti-rads_level"]}


def _loaded(image: np.ndarray, mask: np.ndarray) -> Loaded:
    return Loaded(image, [(CATEGORIES[0], binary_fill_holes(mask != 0))])


def _samples(path: Path, labels: dict[str, str], report: ConversionReport) -> Iterator[Sample]:
    try:
        import h5py
    except ImportError as exc:
        raise DatasetError("reading the Thyroid Cineclip HDF5 file needs h5py (pip install h5py)") from exc
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"cannot open {path}: {exc}") from exc
    with handle:
        missing = [key for key in ("image", "mask") if key not in handle]
        if missing:
            raise DatasetError(f"{path.name}: no dataset(s) {', '.join(missing)} (has {', '.join(handle)})")
        images, masks = handle["image"], handle["mask"]
        ids = [_text(v) for v in handle["annot_id"][()]] if "annot_id" in handle else None
        frames = [int(v) for v in handle["frame_num"][()]] if "frame_num" in handle else None
        if ids is None:
            report.note(f"{path.name}: no annot_id dataset, patient ids unknown")
        lengths = {len(images), len(masks), *(len(x) for x in (ids, frames) if x is not None)}
        if len(lengths) != 1:
            raise DatasetError(f"{path.name}: image, mask, annot_id and frame_num lengths differ ({sorted(lengths)})")
        for index in range(len(images)):
            source = f"{HDF5}#index={index}"
            try:
                image, mask = images[index], masks[index]
            except OSError as exc:
                report.skip(source, f"cannot read frame: {exc}")
                continue
            annot = ids[index] if ids is not None else None
            extra = {"frame": frames[index]} if frames is not None else {}
            yield Sample(
                source,
                partial(_loaded, image, mask),
                patient_id=annot.split("_")[0] if annot else None,
                case_id=annot,
                class_labels=[labels[annot]] if annot in labels else [],
                extra=extra,
            )


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert the cine-clip frames of ``dataset.hdf5`` into ``out_dir``."""
    root = find_root(raw_dir, ["thyroidultrasoundcineclip"], lambda p: (p / HDF5).is_file(), EXPECTED)
    report = ConversionReport(DATASET)
    labels = _tirads(root, report)
    return convert_samples(
        DATASET,
        CATEGORIES,
        _samples(root / HDF5, labels, report),
        out_dir,
        options,
        description="Stanford Thyroid Ultrasound Cine-clip",
        url=URL,
        report=report,
        unit="frame",
    )
