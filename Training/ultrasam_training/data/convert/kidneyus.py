"""Open Kidney Ultrasound Data Set (kidneyUS; Singla et al. 2022, github rsingla92/kidneyUS) -> COCO.

Raw layout: the repository checkout with ``labels/reviewed_masks_1/capsule/<name>.png`` (capsule
polygons of sonographer 1 filled with value 1 by the dataset's ``create_masks.py``),
``labels/reviewed_labels_1.csv`` (VIA export: ``filename``, ``file_attributes`` with Quality and
View) and the registered-access images ``kidneyUS_images_14_june_2022.zip`` unpacked anywhere below
it, outside ``labels/`` (``<n>_IM-xxxx-xxxx_anon.png``). As in the released converter only the
capsule masks are used: every non-zero component is one ``kidney`` instance (the region masks of
cortex, medulla and central echo complex are left out); ``sonographer=2`` reads the second
reviewer's masks instead. Images without a capsule mask (not annotated) and with an empty one are
excluded and reported. The leading number of the file name is kept as the patient id (images sharing
a number are grouped as one patient), and view and quality as image fields when the CSV is present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ultrasam_training.data.convert._labelled_2d import (
    find_root,
    index_files,
    natural_key,
    read_table,
    relative,
    sorted_paths,
)
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples, read_image_file
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import read_gray_mask
from ultrasam_training.data.report import ConversionReport

DATASET = "kidneyus"
CATEGORIES = ("kidney",)
URL = "https://github.com/rsingla92/kidneyUS"


def _loader(image: Path, mask: Path):
    return lambda: Loaded(read_image_file(image), [(CATEGORIES[0], read_gray_mask(mask) > 0)])


def _attributes(root: Path, sonographer: int) -> dict[str, dict]:
    """``{filename: {"view": ..., "quality": ...}}`` from the VIA CSV, when it is there."""
    path = root / "labels" / f"reviewed_labels_{sonographer}.csv"
    if not path.is_file():
        return {}
    fields = {}
    for name, row in read_table(path, "filename").items():
        try:
            attributes = json.loads(row.get("file_attributes") or "{}")
        except json.JSONDecodeError:
            attributes = {}
        fields[name] = {key.lower(): str(attributes[key]) for key in ("View", "Quality") if attributes.get(key)}
    return fields


def _images(root: Path, report: ConversionReport) -> dict[str, Path]:
    folders = sorted_paths(p for p in root.rglob("*") if p.is_dir() and "labels" not in p.relative_to(root).parts)
    images: dict[str, Path] = {}
    for folder in [root, *folders]:
        for stem, path in index_files(folder, report).items():
            if stem in images:
                report.note(f"{relative(path, root)}: same name as {relative(images[stem], root)}; left out")
            else:
                images[stem] = path
    return images


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"sonographer": 1}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert kidneyUS capsule annotations of ``sonographer`` (1 or 2) into ``out_dir``."""
    sonographer = options.extras(OPTIONS, DATASET)["sonographer"]
    capsule = Path("labels") / f"reviewed_masks_{sonographer}" / "capsule"
    root = find_root(
        raw_dir,
        lambda d: (d / capsule).is_dir(),
        f"{capsule.as_posix()}/*.png and the unpacked kidneyUS_images_14_june_2022 PNGs",
    )
    report = ConversionReport(DATASET)
    masks = index_files(root / capsule, report)
    images = _images(root, report)
    if masks and not images:
        raise DatasetError(f"{root}: capsule masks but no images (unpack kidneyUS_images_14_june_2022.zip here)")
    attributes = _attributes(root, sonographer)
    for stem in sorted(set(masks) - set(images)):
        report.skip(f"{capsule.as_posix()}/{masks[stem].name}", "capsule mask without image")
    samples = []
    for stem in sorted(images, key=lambda s: natural_key(relative(images[s], root))):
        image, source = images[stem], relative(images[stem], root)
        if stem not in masks:
            report.exclude(source, f"no {capsule.as_posix()}/{stem}.png (image not annotated)")
            continue
        samples.append(
            Sample(
                source,
                _loader(image, masks[stem]),
                patient_id=stem.split("_")[0],
                case_id=stem,
                extra=attributes.get(image.name, {}),
            )
        )
    return convert_samples(
        DATASET,
        CATEGORIES,
        samples,
        out_dir,
        options,
        description="Open Kidney Ultrasound Data Set (capsule)",
        url=URL,
        report=report,
    )
