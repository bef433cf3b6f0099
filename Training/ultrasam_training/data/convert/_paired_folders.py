"""Shared by the converters of 2-D "image file + mask file" datasets (105US, BUID, BUS, CCAUI, DDTI,
STU-Hospital, TG3K, TN3K, TNSCUI): find the raw root, pair image and mask files by a name key,
binarise a mask by a grey threshold, and make the :class:`Sample` of one pair.

Pairing never drops a file in silence: a mask no image claims and a second mask for one key are
reported as skipped; an image without mask becomes a sample whose ``load`` raises (skipped, named).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from ultrasam_training.data.convert.samples import Loaded, Sample, natural_key, read_image_file
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import image_size, read_gray_mask
from ultrasam_training.data.report import ConversionReport

SUFFIXES_2D = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: words that only say "image" or "mask" in a file name; dropped by :func:`loose_key`
_ROLE_WORDS = re.compile(r"images?|imgs?|masks?|labels?|gt|segmentations?|annotations?")
_SEPARATORS = re.compile(r"[\s_\-.()]+")


def child(folder: Path, name: str) -> Path | None:
    """``folder/name`` where ``name`` may be several components, each matched case-insensitively."""
    current = folder
    for part in Path(name).parts:
        exact = current / part
        if exact.exists():
            current = exact
            continue
        if not current.is_dir():
            return None
        found = [p for p in current.iterdir() if p.name.lower() == part.lower()]
        if not found:
            return None
        current = found[0]
    return current


def find_root(raw_dir: str | Path, required: Sequence[str], prefixes: Sequence[str], expected: str) -> Path:
    """The first ``raw_dir/<prefix>`` holding every path of ``required`` (names matched case-insensitively)."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DatasetError(f"{raw_dir} is not a folder")
    for prefix in prefixes:
        candidate = child(raw_dir, prefix) if prefix else raw_dir
        if candidate is not None and candidate.is_dir() and all(child(candidate, r) is not None for r in required):
            return candidate
    raise DatasetError(f"{raw_dir}: layout not recognised; expected {expected}")


def files(folder: Path, suffixes: Sequence[str] = SUFFIXES_2D) -> list[Path]:
    """Files of ``folder`` with one of ``suffixes`` (any case), in natural name order."""
    wanted = tuple(s.lower() for s in suffixes)
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in wanted), key=lambda p: natural_key(p.name)
    )


def stem_key(path: Path) -> str:
    """Pair by the file name without extension (case-insensitive): ``0001.jpg`` <-> ``0001.PNG``."""
    return path.stem.lower()


def loose_key(path: Path) -> str:
    """Pair by the name without role words and separators: ``1 Benign Image`` <-> ``1 Benign Mask``."""
    return _SEPARATORS.sub("", _ROLE_WORDS.sub("", path.stem.lower()))


def pair_files(
    images: Iterable[Path],
    masks: Iterable[Path],
    report: ConversionReport,
    relative: Callable[[Path], str],
    key: Callable[[Path], str | None] = stem_key,
) -> list[tuple[Path, Path | None]]:
    """``(image, mask or None)`` per image, in natural order; unclaimed and duplicate masks are reported."""
    by_key: dict[str, Path] = {}
    for mask in masks:
        name = key(mask)
        if name is None:
            report.skip(relative(mask), "mask file name not understood")
        elif name in by_key:
            report.skip(relative(mask), f"second mask for the image of {relative(by_key[name])}")
        else:
            by_key[name] = mask
    pairs = []
    for image in images:
        name = key(image)
        if name is None:
            report.skip(relative(image), "image file name not understood")
        else:
            pairs.append((image, by_key.pop(name, None)))
    for orphan in sorted(by_key.values(), key=lambda p: natural_key(p.name)):
        report.skip(relative(orphan), "mask without image")
    return pairs


def binary_mask(path: Path, threshold: int, *, report: ConversionReport | None = None, source: str = "") -> np.ndarray:
    """``mask >= threshold`` on the grey mask (1-bit masks count as 0/255).

    With ``report``, non-zero values below ``threshold`` are noted (for lossless masks whose rule
    is an exact value, e.g. ``//255``: such pixels are left out, never silently).
    """
    array = read_gray_mask(path)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if report is not None:
        below = np.unique(array[(array > 0) & (array < threshold)])
        if below.size:
            shown = ", ".join(str(int(v)) for v in below[:8]) + (", ..." if below.size > 8 else "")
            report.note(f"{source}: mask values {shown} are below {threshold} and left out")
    return array >= threshold


def resize_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask resized to ``(height, width)`` by nearest neighbour (as mmcv/cv2 do)."""
    resized = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return resized.astype(bool)


def pair_sample(
    root: Path,
    image: Path,
    mask: Path | None,
    category: str,
    threshold: int,
    *,
    report: ConversionReport,
    note_below: bool = False,
    resize: bool = False,
    **fields,
) -> Sample:
    """The sample of one pair: ``mask >= threshold`` is ``category``; a missing mask is a skipped pair.

    ``note_below`` notes mask values below the threshold (see :func:`binary_mask`). ``resize``
    brings a mask of another size to the image by nearest neighbour, noted in ``report``.
    """
    source = image.relative_to(root).as_posix()

    def load() -> Loaded:
        if mask is None:
            raise DatasetError("no mask file for this image")
        read_image_file(image)
        foreground = binary_mask(mask, threshold, report=report if note_below else None, source=source)
        if resize:
            shape = image_size(image)
            if foreground.shape != shape:
                report.note(f"{source}: mask {foreground.shape[::-1]} resized (nearest) to the image {shape[::-1]}")
                foreground = resize_nearest(foreground, shape)
        return Loaded(image=image, masks=[(category, foreground)])

    return Sample(source, load, **fields)


def folder_samples(
    root: Path,
    image_dir: Path,
    mask_dir: Path,
    category: str,
    threshold: int,
    report: ConversionReport,
    *,
    key: Callable[[Path], str | None] = stem_key,
    note_below: bool = False,
    resize: bool = False,
    fields: Callable[[Path], dict] = lambda image: {},
) -> list[Sample]:
    """Samples of an image folder paired with a mask folder; ``fields(image)`` gives ids, labels, split."""
    pairs = pair_files(files(image_dir), files(mask_dir), report, lambda p: p.relative_to(root).as_posix(), key)
    return [
        pair_sample(
            root, image, mask, category, threshold, report=report, note_below=note_below, resize=resize, **fields(image)
        )
        for image, mask in pairs
    ]


def id_key(name: str) -> str:
    """Image id of a file name or CSV entry: stem, lower case, leading zeros dropped (``0007.PNG`` -> ``7``)."""
    stem = Path(name.strip()).stem.lower() if "." in name else name.strip().lower()
    return str(int(stem)) if stem.isdigit() else stem


def read_class_csv(path: Path, classes: dict[int, str], report: ConversionReport) -> dict[str, str]:
    """``{id_key(first column): class name}`` from a CSV of ``id,class-number`` rows (a header row is skipped).

    Class numbers outside ``classes`` are noted and left without label.
    """
    import csv

    labels: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for row in csv.reader(handle):
            if len(row) < 2 or not row[0].strip():
                continue
            try:
                number = int(float(row[1]))
            except ValueError:
                continue  # header
            if number in classes:
                labels[id_key(row[0])] = classes[number]
            else:
                report.note(
                    f"{path.name}: class {row[1].strip()!r} of {row[0].strip()} is not one of {sorted(classes)}"
                )
    return labels
