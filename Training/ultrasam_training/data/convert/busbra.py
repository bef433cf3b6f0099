"""BUS-BRA breast ultrasound (Gómez-Flores et al., Med Phys 2024; zenodo 10.5281/zenodo.7730709) -> COCO.

Raw layout (the zenodo archive unpacks to ``BUSBRA/``): ``Images/bus_<case>-<view>.png``,
``Masks/mask_<case>-<view>.png`` (0/255), ``bus_data.csv`` (``ID`` = ``bus_0001-l``, ``Case``,
``Histology``, ``Pathology`` benign/malignant, ``BIRADS``, ...) and ``5-fold-cv.csv`` /
``10-fold-cv.csv`` (``ID``, ``kFold``). Each lesion mask (>= 128) becomes a ``benign`` or
``malignant`` instance by the image's ``Pathology``; that is also kept as the image-level label,
BIRADS and histology as image fields, and the patient from the ID (``bus_0001-l`` -> ``0001``).

Split: as the released converter, ``kFold == 1`` of ``5-fold-cv.csv`` is ``split="test"`` and the
rest ``"train"``; ``test_fold`` picks another fold (``None``: no split), ``folds_file`` the 10-fold
partition. Differences from the released converter: an image missing from the CSV is skipped and
named (the original reused the previous row's label and fold), and the patient id is kept.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ultrasam_training.data.convert._labelled_2d import binary_mask, find_root, index_files, read_table
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples, read_image_file
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.report import ConversionReport

DATASET = "busbra"
CATEGORIES = ("benign", "malignant")
URL = "https://github.com/wgomezf/BUS-BRA"
_PATIENT = re.compile(r"^bus_(\d+)")
_EXPECTED = "BUSBRA/ with Images/bus_*.png, Masks/mask_*.png and bus_data.csv or 5-fold-cv.csv"


def _is_root(folder: Path) -> bool:
    return (folder / "Images").is_dir() and (folder / "Masks").is_dir()


def _loader(image: Path, mask: Path, category: str):
    return lambda: Loaded(read_image_file(image), [(category, binary_mask(mask))])


def _samples(root: Path, report: ConversionReport, folds_file: str, test_fold: int | None) -> list[Sample]:
    data = read_table(root / "bus_data.csv", "ID") if (root / "bus_data.csv").is_file() else {}
    folds = read_table(root / folds_file, "ID") if (root / folds_file).is_file() else {}
    if not data and not folds:
        raise DatasetError(f"{root}: neither bus_data.csv nor {folds_file} (pathology labels are needed)")
    if test_fold is not None and not folds:
        report.note(f"{folds_file} missing: no split assigned")
    images = index_files(root / "Images", report, strip_prefix="bus_")
    masks = index_files(root / "Masks", report, strip_prefix="mask_")
    samples = []
    for key in sorted(set(masks) - set(images)):
        report.skip(f"Masks/{masks[key].name}", "mask without image")
    for key, image in images.items():
        source = f"Images/{image.name}"
        case_id = f"bus_{key}"
        row = {**folds.get(case_id, {}), **data.get(case_id, {})}
        pathology = row.get("Pathology", "").lower()
        if key not in masks:
            report.skip(source, f"no Masks/mask_{key}.png")
            continue
        if pathology not in CATEGORIES:
            report.skip(source, f"no benign/malignant Pathology for {case_id} in bus_data.csv/{folds_file}")
            continue
        split = None
        if test_fold is not None and row.get("kFold"):
            split = "test" if int(row["kFold"]) == test_fold else "train"
        extra = {name.lower(): row[name] for name in ("BIRADS", "Histology") if row.get(name)}
        match = _PATIENT.match(case_id)
        samples.append(
            Sample(
                source,
                _loader(image, masks[key], pathology),
                patient_id=match[1] if match else case_id,
                case_id=case_id,
                class_labels=[pathology],
                split=split,
                extra=extra,
            )
        )
    return samples


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"test_fold": 1, "folds_file": "5-fold-cv.csv"}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert BUS-BRA into ``out_dir``; ``test_fold`` of ``folds_file`` becomes ``split="test"``."""
    test_fold, folds_file = options.extras(OPTIONS, DATASET).values()
    root = find_root(raw_dir, _is_root, _EXPECTED)
    report = ConversionReport(DATASET)
    return convert_samples(
        DATASET,
        CATEGORIES,
        _samples(root, report, folds_file, test_fold),
        out_dir,
        options,
        description="BUS-BRA: breast ultrasound dataset with BI-RADS categories",
        url=URL,
        report=report,
    )
