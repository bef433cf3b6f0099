"""BUS-UCLM breast ultrasound lesion segmentation (Sci Data 2025, 10.1038/s41597-025-04562-3) -> COCO.

Raw layout: ``images/<PATIENT>_<nnn>.png``, ``masks/<PATIENT>_<nnn>.png`` (RGB: black background,
green (0,255,0) benign, red (255,0,0) malignant) and ``INFO.csv`` (``;``-separated: ``Image``,
``Label`` normal/benign/malignant, ...), inside the download folder. Green and red pixels become
``benign`` / ``malignant`` instances (one per component); the patient is the name's prefix and
the CSV ``Label`` the image-level class. Images with an all-black mask (the 419 normal ones) are
excluded unless ``keep_empty=True``, as the released converter skipped them. Other mask colours
are reported, never dropped silently; a mask whose size differs from its image is skipped.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ultrasam_training.data.convert._labelled_2d import find_root, index_files, load_colour_mask, read_table
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Sample, convert_samples
from ultrasam_training.data.report import ConversionReport

DATASET = "bus_uclm"
CATEGORIES = ("benign", "malignant")
URL = "https://data.mendeley.com/datasets/7fvgj4jsp7/1"
COLORS = {(0, 255, 0): "benign", (255, 0, 0): "malignant"}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert BUS-UCLM (``images/``, ``masks/``, optional ``INFO.csv``) into ``out_dir``."""
    root = find_root(
        raw_dir,
        lambda d: (d / "images").is_dir() and (d / "masks").is_dir(),
        "images/<PATIENT>_<nnn>.png + masks/<PATIENT>_<nnn>.png (+ INFO.csv)",
    )
    report = ConversionReport(DATASET)
    info = read_table(root / "INFO.csv", "Image") if (root / "INFO.csv").is_file() else {}
    images = index_files(root / "images", report)
    masks = index_files(root / "masks", report)
    for stem in sorted(set(masks) - set(images)):
        report.skip(f"masks/{masks[stem].name}", "mask without image")
    samples = []
    for stem, image in images.items():
        source = f"images/{image.name}"
        if stem not in masks:
            report.skip(source, f"no masks/{stem}.png")
            continue
        label = info.get(image.name, {}).get("Label", "").lower()
        load = partial(load_colour_mask, image, masks[stem], COLORS, source, report, "neither green nor red")
        samples.append(Sample(source, load, patient_id=stem.split("_")[0], class_labels=[label] if label else ()))
    return convert_samples(
        DATASET,
        CATEGORIES,
        samples,
        out_dir,
        options,
        description="BUS-UCLM breast ultrasound lesion segmentation",
        url=URL,
        report=report,
    )
