"""Ultrasound Nerve Segmentation (Kaggle 2016, brachial plexus in neck ultrasound) -> COCO.

Raw layout (the competition download, ``ultrasound-nerve-segmentation/``): ``train/<subject>_<image>.tif``
with ``train/<subject>_<image>_mask.tif`` (0/255); ``test/`` has no masks and is not read, nor is
``train_masks.csv`` (the same masks run-length encoded). Masks are thresholded >= 150 of 255 as
in the released converter; every connected component is one ``cervical_nerves`` instance.
Patient id = ``<subject>``. About half of the masks are empty: the released converter kept those
images without annotation; here they are excluded (and counted) unless ``keep_empty=True``, and
one COCO file is written instead of one per subject.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any, Iterator

from ultrasam_training.data.convert._volume_pairs import find_root
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples, natural_key, read_image_file
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import read_gray_mask
from ultrasam_training.data.report import ConversionReport

DATASET = "ultrasound_nerve_segmentation"
CATEGORIES = ("cervical_nerves",)
URL = "https://www.kaggle.com/c/ultrasound-nerve-segmentation"
THRESHOLD = 150
_NAME = re.compile(r"^(?P<subject>\d+)_(?P<image>\d+)(?P<mask>_mask)?$")
EXPECTED = (
    "train/<subject>_<image>.tif + train/<subject>_<image>_mask.tif, optionally inside ultrasound-nerve-segmentation/"
)


def _is_root(folder: Path) -> bool:
    return (folder / "train").is_dir() and any((folder / "train").glob("*_mask.tif"))


def _load(image: Path, mask: Path, threshold: int) -> Loaded:
    if not mask.is_file():
        raise DatasetError(f"no mask {mask.name}")
    return Loaded(read_image_file(image), [(CATEGORIES[0], read_gray_mask(mask) >= threshold)])


def _samples(train: Path, threshold: int, report: ConversionReport) -> Iterator[Sample]:
    images, masks = {}, set()
    for path in train.glob("*.tif"):
        match = _NAME.match(path.stem)
        if match is None:
            report.note(f"train/{path.name}: name is not <subject>_<image>[_mask].tif, left out")
        elif match["mask"]:
            masks.add(path.stem[: -len("_mask")])
        else:
            images[path.stem] = (path, match["subject"])
    for stem in sorted(masks - set(images), key=natural_key):
        report.skip(f"train/{stem}_mask.tif", "mask without image")
    for stem in sorted(images, key=natural_key):
        path, subject = images[stem]
        yield Sample(
            f"train/{path.name}", partial(_load, path, train / f"{stem}_mask.tif", threshold), patient_id=subject
        )


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"threshold": THRESHOLD}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert the Kaggle training images and masks into ``out_dir``."""
    threshold = options.extras(OPTIONS, DATASET)["threshold"]
    root = find_root(raw_dir, ["ultrasound-nerve-segmentation"], _is_root, EXPECTED)
    report = ConversionReport(DATASET)
    return convert_samples(
        DATASET,
        CATEGORIES,
        _samples(root / "train", threshold, report),
        out_dir,
        options,
        description="Kaggle Ultrasound Nerve Segmentation (training set)",
        url=URL,
        report=report,
    )
