"""Fast-U-Net fetal abdomen (AC) and head (HC) images (github.com/vahidashkani/Fast-U-Net) -> COCO.

The repository publishes RAR archives that must be extracted first (``unrar x``; this converter
does not read RAR)::

    Dataset/AC/{AC_image1,AC_image2,AC_mask}.rar  -> PNG images + masks, same file name
    Dataset/HC/{HC_image1,HC_image2,HC_image3,HC_mask}.rar -> <n>_HC.png + <n>_HC_Annotation.png
    Dataset/AC/{train,val}.txt, Dataset/{train,val}.txt    # published split (image, mask per line)

Files are found recursively under ``AC/`` and ``HC/``; a PNG whose path below them contains
``mask`` is a mask (as the released converter). Masks are thresholded at 128 (the released
``//255`` kept only pure white: the same on 0/255 PNGs) and cleaned as the released converter:
12x12 erosion, largest connected component, 12x12 dilation, giving one ``ac_hc`` instance per
image (small specks and second blobs are dropped on purpose). The image-level label is ``AC`` or
``HC``; the published split files give ``split`` "train"/"val"; the HC18 subject number (``<n>``
of ``<n>_HC``) is the patient id.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage import measure

from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples, natural_key, read_image_file
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import read_gray_mask
from ultrasam_training.data.report import ConversionReport

DATASET = "fast_u_net"
CATEGORIES = ("ac_hc",)
GROUPS = ("AC", "HC")
URL = "https://github.com/vahidashkani/Fast-U-Net"
FOOTPRINT = np.ones((12, 12), dtype=bool)


def find_dataset(raw_dir: str | Path) -> Path:
    """The folder holding ``AC/`` and/or ``HC/`` with extracted PNGs (``raw_dir`` or its ``Dataset``)."""
    raw_dir = Path(raw_dir)
    for candidate in (raw_dir, raw_dir / "Dataset", raw_dir / "Fast-U-Net" / "Dataset"):
        groups = [candidate / g for g in GROUPS if (candidate / g).is_dir()]
        if any(any(g.rglob("*.png")) for g in groups):
            return candidate
        if any(any(g.glob("*.rar")) for g in groups):
            raise DatasetError(
                f"{candidate}: only .rar archives found in AC/ and HC/; extract them first "
                "(e.g. `unrar x AC_image1.rar`), then convert the extracted folders"
            )
    raise DatasetError(f"{raw_dir}: expected Dataset/AC/ and Dataset/HC/ with the extracted PNG images and masks")


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """12x12 erosion, largest connected component, 12x12 dilation (the released converter's cleaning).

    The image border does not erode (outside counts as foreground, as skimage's grey erosion).
    """
    eroded = ndimage.binary_erosion(mask, FOOTPRINT, border_value=1)
    labels = measure.label(eroded, connectivity=2)
    if labels.max() == 0:
        return eroded
    largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return ndimage.binary_dilation(labels == largest, FOOTPRINT)


def _load(image: Path, mask_path: Path) -> Loaded:
    read_image_file(image)
    return Loaded(image, [("ac_hc", clean_mask(read_gray_mask(mask_path) >= 128))])


def _splits(dataset: Path) -> dict[str, str]:
    split = {}
    for folder in (dataset, *(dataset / g for g in GROUPS)):
        for name in ("train", "val"):
            path = folder / f"{name}.txt"
            if path.is_file():
                for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                    if line.split():
                        split[Path(line.split()[0]).name] = name
    return split


def _samples(dataset: Path, report: ConversionReport):
    split = _splits(dataset)
    for group in GROUPS:
        folder = dataset / group
        if not folder.is_dir():
            report.note(f"{group}/ is missing")
            continue
        images, masks = {}, {}
        for path in folder.rglob("*.png"):
            is_mask = "mask" in str(path.relative_to(folder)).lower()
            key = path.stem.removesuffix("_Annotation")
            (masks if is_mask else images)[key] = path
        for key in sorted(set(masks) - set(images), key=natural_key):
            report.skip(str(masks[key].relative_to(dataset)), "mask without image")
        for key in sorted(images, key=natural_key):
            image = images[key]
            mask = masks.get(key, folder / "mask" / image.name)  # a missing mask is a skipped pair
            yield Sample(
                str(image.relative_to(dataset)),
                lambda image=image, mask=mask: _load(image, mask),
                patient_id=key.split("_")[0] if group == "HC" else None,
                class_labels=[group],
                split=split.get(image.name),
            )


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert the extracted Fast-U-Net AC and HC data into ``out_dir`` (see the module docstring)."""
    dataset = find_dataset(raw_dir)
    report = ConversionReport(DATASET)
    return convert_samples(
        DATASET,
        CATEGORIES,
        _samples(dataset, report),
        out_dir,
        options,
        description="Fast-U-Net AC and HC images",
        url=URL,
        report=report,
    )
