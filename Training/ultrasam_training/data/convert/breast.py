"""BrEaST / Breast-Lesions-USG (Pawłowska et al., Sci Data 2024; TCIA 10.7937/9WKK-Q141) -> COCO.

Raw layout: ``BrEaST-Lesions_USG-images_and_masks/case<NNN>.png`` with one mask per annotated
region, ``case<NNN>_<label>.png`` (``tumor``, ``other``, ...), and optionally the clinical table
``BrEaST-Lesions-USG-clinical-data-*.csv`` beside or above that folder (``Image_filename``,
``Classification`` benign/malignant/normal, ``BIRADS``, ...). Label mapping of the released
converter: ``tumor`` (also ``tumor1``, ``tumor2``) -> ``tumor``, every other label -> ``cyst``
(the labels met are listed in a note). Each mask file is read on its own (>= 128, or > 0 for 0/1
masks) and each component is one instance. The case is the patient (one scan per patient);
``Classification`` is kept as the image-level label and BIRADS as an image field when the CSV is
there (the XLSX version is not read). Normal scans have no mask: excluded (reported) unless
``keep_empty=True``.
"""

from __future__ import annotations

import re
from pathlib import Path

from ultrasam_training.data.convert._labelled_2d import find_root, natural_key, read_table, sorted_paths
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples, read_image_file
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import read_gray_mask
from ultrasam_training.data.report import ConversionReport

DATASET = "breast"
CATEGORIES = ("tumor", "cyst")
URL = "https://www.cancerimagingarchive.net/collection/breast-lesions-usg/"
_FILE = re.compile(r"^(?P<case>case\d+)(?:_(?P<label>.+))?\.png$", re.IGNORECASE)
_TUMOR = re.compile(r"^tumou?r\d*$", re.IGNORECASE)


def _is_root(folder: Path) -> bool:
    return any(_FILE.match(p.name) and p.is_file() for p in folder.iterdir())


def category_of(label: str) -> str:
    """``tumor`` for the tumour masks, ``cyst`` for any other label (the released mapping)."""
    return "tumor" if _TUMOR.match(label) else "cyst"


def _foreground(path: Path):
    mask = read_gray_mask(path)
    return mask >= (128 if mask.max() > 1 else 1)


def _loader(image: Path, masks: list[tuple[str, Path]]):
    return lambda: Loaded(read_image_file(image), [(category_of(label), _foreground(p)) for label, p in masks])


def _clinical(root: Path) -> dict[str, dict[str, str]]:
    for folder in (root, root.parent):
        for path in sorted_paths(folder.glob("*.csv")):
            try:
                return read_table(path, "Image_filename")
            except DatasetError:
                continue
    return {}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert BrEaST (``case<NNN>.png`` + ``case<NNN>_<label>.png``) into ``out_dir``."""
    root = find_root(raw_dir, _is_root, "BrEaST-Lesions_USG-images_and_masks/case<NNN>.png + case<NNN>_<label>.png")
    report = ConversionReport(DATASET)
    clinical = _clinical(root)
    images: dict[str, Path] = {}
    masks: dict[str, list[tuple[str, Path]]] = {}
    for path in sorted_paths(p for p in root.iterdir() if p.is_file()):
        match = _FILE.match(path.name)
        if match and match["label"]:
            masks.setdefault(match["case"], []).append((match["label"], path))
        elif match:
            images[match["case"]] = path
    others = sorted({label for found in masks.values() for label, _ in found if category_of(label) == "cyst"})
    if others:
        report.note(f"mask labels mapped to cyst: {', '.join(others)}")
    for case in sorted(set(masks) - set(images), key=natural_key):
        report.skip(", ".join(p.name for _, p in masks[case]), "mask(s) without image")
    samples = []
    for case in sorted(images, key=natural_key):
        image = images[case]
        if case not in masks and not options.keep_empty:
            report.exclude(image.name, "no mask (normal scan; keep_empty=True keeps it)")
            continue
        row = clinical.get(image.name, {})
        label = row.get("Classification", "").lower()
        extra = {"birads": row["BIRADS"]} if row.get("BIRADS") else {}
        samples.append(
            Sample(
                image.name,
                _loader(image, masks.get(case, [])),
                patient_id=case,
                case_id=case,
                class_labels=[label] if label else (),
                extra=extra,
            )
        )
    return convert_samples(
        DATASET,
        CATEGORIES,
        samples,
        out_dir,
        options,
        description="BrEaST: Breast-Lesions-USG",
        url=URL,
        report=report,
    )
