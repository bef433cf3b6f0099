"""Any "image folder + mask folder" dataset -> COCO: what most users have.

Images are found under ``RAW/<image_dir>`` (recursively with ``recursive=True``); the masks of
``sub/name.ext`` are the files of ``RAW/<mask_dir>/sub/`` matching ``mask_pattern`` with
``{stem}`` replaced by ``name`` (glob wildcards allowed, so ``{stem}_mask*.png`` also finds second
masks; every matching file is added). When images and masks share a folder, files matching the
mask pattern are not taken as images.

Mask values -> categories: ``categories`` maps a grey value (int) or an RGB colour (3-tuple) to a
category name; without it, every pixel >= ``threshold`` is one category ``object``. Values present
in a mask but mapped to nothing are reported (pixel counts), never dropped in silence.
Optional ``patient_pattern``: a regular expression whose first group, searched in the image's
relative path, is the patient id (for patient-level splits).
"""

from __future__ import annotations

import fnmatch
import glob
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples, natural_key
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import IMAGE_SUFFIXES, read_color_mask, read_gray_mask
from ultrasam_training.data.report import ConversionReport

CategoryKey = int | tuple[int, int, int]
_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _has_image_suffix(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES)


def parse_category(text: str) -> tuple[CategoryKey, str]:
    """``"255=lesion"`` -> (255, "lesion"); ``"0,255,0=benign"`` -> ((0, 255, 0), "benign")."""
    value, sep, name = text.partition("=")
    if not sep or not name.strip():
        raise DatasetError(f"category {text!r} must read VALUE=NAME or R,G,B=NAME")
    try:
        numbers = tuple(int(v) for v in value.split(","))
    except ValueError as exc:
        raise DatasetError(f"category value {value!r} is not an integer or R,G,B") from exc
    if len(numbers) not in (1, 3):
        raise DatasetError(f"category value {value!r} must be one grey value or R,G,B")
    return (numbers[0] if len(numbers) == 1 else numbers), name.strip()


def _values_present(mask: np.ndarray) -> Counter:
    if mask.ndim == 2:
        values, counts = np.unique(mask, return_counts=True)
        return Counter({int(v): int(c) for v, c in zip(values, counts)})
    colours, counts = np.unique(mask.reshape(-1, 3), axis=0, return_counts=True)
    return Counter({tuple(int(x) for x in colour): int(c) for colour, c in zip(colours, counts)})


#: the generic converter's own options (the CLI's "generic converter" flags) and their defaults
OPTIONS: dict[str, Any] = {
    "dataset": "generic",
    "image_dir": "images",
    "mask_dir": "masks",
    "mask_pattern": "{stem}.png",
    "categories": None,
    "threshold": 1,
    "recursive": False,
    "patient_pattern": None,
    "class_from_folder": False,
}


@dataclass
class _MaskRule:
    """How mask files become category masks; counts the values no category maps, over all images."""

    categories: Mapping[CategoryKey, str] | None
    threshold: int
    unmapped: Counter = field(default_factory=Counter)

    @property
    def colour(self) -> bool:
        return bool(self.categories) and any(isinstance(key, tuple) for key in self.categories)

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(self.categories.values())) if self.categories else ["object"]

    def masks(self, path: Path) -> list[tuple[str, np.ndarray]]:
        """One mask per category (or ``object``: pixels >= threshold) of one mask file."""
        array = read_color_mask(path) if self.colour else read_gray_mask(path)
        if not self.categories:
            return [("object", array >= self.threshold)]
        present = _values_present(array)
        masks = []
        for key, name in self.categories.items():
            masks.append((name, np.all(array == np.array(key), axis=-1) if self.colour else array == key))
            present.pop(key, None)
        present.pop((0, 0, 0) if self.colour else 0, None)
        self.unmapped.update(present)
        return masks

    def note_unmapped(self, report: ConversionReport) -> None:
        if self.unmapped:
            listing = ", ".join(f"{value}: {count} px" for value, count in sorted(self.unmapped.items(), key=str))
            report.note(f"mask values with no category (left as background): {listing}")


def _rule(categories: Mapping[CategoryKey, str] | Sequence[str] | None, threshold: int) -> _MaskRule:
    """The mask rule of the options: a list of names maps grey values 1, 2, ...; grey and colour never mix."""
    if isinstance(categories, Sequence) and not isinstance(categories, str):
        categories = {index + 1: name for index, name in enumerate(categories)}
    rule = _MaskRule(categories, threshold)
    if rule.colour and not all(isinstance(key, tuple) and len(key) == 3 for key in categories):
        raise DatasetError("categories must be all grey values or all R,G,B colours")
    return rule


def _image_paths(images_root: Path, masks_root: Path, mask_pattern: str, recursive: bool) -> list[Path]:
    """Image files in natural order; in a folder shared with the masks, files named like masks are not images."""
    candidates = images_root.rglob("*") if recursive else images_root.iterdir()
    paths = sorted(
        (p for p in candidates if p.is_file() and _has_image_suffix(p) and not p.name.startswith(".")),
        key=lambda p: natural_key(p.relative_to(images_root).as_posix()),
    )
    if images_root.resolve() == masks_root.resolve():
        mask_glob = mask_pattern.replace("{stem}", "*")
        paths = [p for p in paths if not fnmatch.fnmatch(p.name, mask_glob)]
    if not paths:
        raise DatasetError(f"no images in {images_root}")
    return paths


def _load(image_path: Path, mask_folder: Path, mask_pattern: str, rule: _MaskRule) -> Loaded:
    """The image and the category masks of every mask file matching ``mask_pattern`` for it."""
    stem = image_path.name[: -len(".nii.gz")] if image_path.name.lower().endswith(".nii.gz") else image_path.stem
    pattern = mask_pattern.replace("{stem}", glob.escape(stem))
    mask_paths = sorted(
        (Path(p) for p in glob.glob(str(Path(glob.escape(str(mask_folder))) / pattern)) if Path(p) != image_path),
        key=lambda p: natural_key(p.name),
    )
    if not mask_paths:
        raise DatasetError(f"no mask matching {mask_folder / mask_pattern.replace('{stem}', stem)}")
    masks, sources = [], []
    for path in mask_paths:
        for name, mask in rule.masks(path):
            masks.append((name, mask))
            sources.append(path.name)
    return Loaded(image_path, masks, sources)


def _patient_id(regex: re.Pattern | None, source_path: str, report: ConversionReport) -> str | None:
    """Group 1 of ``patient_pattern`` in the image's relative path (noted when it does not match)."""
    if regex is None:
        return None
    match = regex.search(source_path)
    if match is None or not match.groups():
        report.note(f"{source_path}: patient_pattern did not match; the image is its own patient")
        return None
    return match.group(1)


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert paired image/mask folders under ``raw_dir`` into ``out_dir`` as dataset ``dataset``."""
    extra = options.extras(OPTIONS, "generic")
    dataset, mask_pattern = extra["dataset"], extra["mask_pattern"]
    if not _DATASET_NAME.match(dataset) or "__" in dataset:
        raise DatasetError(f"dataset name {dataset!r}: use letters, digits, '_', '-', '.' (no '__')")
    if "{stem}" not in mask_pattern:
        raise DatasetError(f"mask_pattern {mask_pattern!r} must contain {{stem}}")
    rule = _rule(extra["categories"], extra["threshold"])
    images_root, masks_root = Path(raw_dir) / extra["image_dir"], Path(raw_dir) / extra["mask_dir"]
    for folder in (images_root, masks_root):
        if not folder.is_dir():
            raise DatasetError(f"folder not found: {folder}")
    patient_regex = re.compile(extra["patient_pattern"]) if extra["patient_pattern"] else None
    report = ConversionReport(dataset)
    samples = []
    for image_path in _image_paths(images_root, masks_root, mask_pattern, extra["recursive"]):
        relative = image_path.relative_to(images_root)
        labels = [relative.parent.name] if extra["class_from_folder"] and relative.parent.name else []
        samples.append(
            Sample(
                relative.as_posix(),
                partial(_load, image_path, masks_root / relative.parent, mask_pattern, rule),
                patient_id=_patient_id(patient_regex, relative.as_posix(), report),
                class_labels=labels,
            )
        )
    return convert_samples(
        dataset,
        rule.names,
        samples,
        out_dir,
        options,
        description=f"{dataset} (generic image/mask folders)",
        report=report,
        summarise=rule.note_unmapped,
    )
