"""Shared by the volume converters: one image volume + one label volume -> one sample per annotated slice.

Each dataset module only lists its (image, label) pairs as :class:`VolumePair` and says how labels
become categories; :func:`convert_pairs` does the rest the same way for all of them: read both
volumes (SimpleITK), check their ``(z, y, x)`` shapes agree, window the image to 8 bit **once per
volume**, cut image and label along the same view, flip both as the released converter did, and
hand one :class:`Sample` per slice to :func:`convert_samples`.

* A volume that cannot be read, a missing label volume or disagreeing shapes: one skipped entry
  naming the image file (the whole volume is left out, never half of it).
* Slices without any mapped structure are left out unless ``keep_empty=True``: one ``excluded``
  entry per volume naming the slice indices (``a.nii.gz#slice=0-11,40``), not one per slice.
* Label values no category maps are left out and noted once per volume.
* Flips: the released converters used mmcv ``imflip``, whose ``"diagonal"`` is ``np.flip`` over
  both axes (a 180 degree rotation, *not* a transpose); ``"vertical"`` flips the rows.
* A 4-D label file (one channel per structure) is accepted with its channels first (SimpleITK's
  ``(c, z, y, x)`` for a 4-D NIfTI) or last (a vector image's ``(z, y, x, c)``); it is brought to
  channels-last by comparing with the image's shape, so slices are ``(y, x, c)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal, Mapping, Sequence

import numpy as np

from ultrasam_training.data.convert.options import ConvertOptions
from ultrasam_training.data.convert.samples import (
    READ_ERRORS,
    Loaded,
    Sample,
    convert_samples,
    natural_key,
    unmapped_values,
)
from ultrasam_training.data.convert.volumes import View, read_volume, slices, window_to_uint8
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.report import ConversionReport

Flip = Literal["vertical", "horizontal", "diagonal"]
_FLIP_AXES = {"vertical": (0,), "horizontal": (1,), "diagonal": (0, 1)}
#: label value -> category name (several values may share a name), or one name for every non-zero value
LabelMapping = Mapping[int, str] | str
MaskList = list[tuple[str, np.ndarray]]


@dataclass
class VolumePair:
    """One image volume and its label volume (``label=None``: missing, reported as skipped)."""

    image: Path
    label: Path | None
    source: str  #: the image path relative to the raw folder (report and ``source_path``)
    patient_id: str | None = None
    case_id: str | None = None
    split: str | None = None
    class_labels: Sequence[str] = ()
    extra: dict = field(default_factory=dict)


def find_root(raw_dir: str | Path, subfolders: Sequence[str], is_root: Callable[[Path], bool], expected: str) -> Path:
    """``raw_dir`` or the first of its ``subfolders`` (nested paths allowed) that ``is_root`` accepts."""
    raw_dir = Path(raw_dir)
    for candidate in (raw_dir, *(raw_dir / sub for sub in subfolders)):
        if candidate.is_dir() and is_root(candidate):
            return candidate
    raise DatasetError(f"{raw_dir}: layout not recognised (expected {expected})")


def nifti_stem(path: Path) -> str:
    """File name without ``.nii.gz`` / ``.nii`` / ``.mha`` / ``.nrrd``."""
    for suffix in (".nii.gz", ".nii", ".mha", ".nrrd"):
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def pair_files(
    images: Mapping[str, Path], labels: Mapping[str, Path], root: Path, report: ConversionReport
) -> list[tuple[str, Path, Path | None]]:
    """``(key, image, label or None)`` in natural key order; labels without image are reported as skipped."""
    for key in sorted(set(labels) - set(images), key=natural_key):
        report.skip(labels[key].relative_to(root).as_posix(), "label volume without an image volume")
    return [(key, images[key], labels.get(key)) for key in sorted(images, key=natural_key)]


def flip(array: np.ndarray, how: Flip | None) -> np.ndarray:
    """``array`` flipped over its first two axes as mmcv's ``imflip`` would (None: unchanged)."""
    return array if how is None else np.flip(array, _FLIP_AXES[how])


def category_masks(label: np.ndarray, mapping: LabelMapping) -> MaskList:
    """One boolean mask per category name of ``mapping`` (values sharing a name are merged)."""
    if isinstance(mapping, str):
        return [(mapping, label != 0)]
    names = dict.fromkeys(mapping.values())
    return [(name, np.isin(label, [v for v, n in mapping.items() if n == name])) for name in names]


def index_ranges(indices: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    parts: list[str] = []
    for index in indices:
        if parts and int(parts[-1].rsplit("-", 1)[-1]) == index - 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{index}"
        else:
            parts.append(str(index))
    return ",".join(parts)


def _channels_last(label: np.ndarray, spatial: tuple[int, ...]) -> np.ndarray:
    if label.ndim == 4 and label.shape[1:] == spatial and label.shape[:3] != spatial:
        return np.moveaxis(label, 0, -1)
    return label


def _unmapped(label: np.ndarray, mapping: Mapping[int, str]) -> list[int]:
    """Non-zero values of ``label`` no category maps (bincount: np.unique is slow on 300 MB sweeps)."""
    if label.dtype.kind == "u" and label.dtype.itemsize <= 2:
        present = np.flatnonzero(np.bincount(label.ravel()))
        return [int(v) for v in present if v != 0 and int(v) not in mapping]
    return unmapped_values(label, dict(mapping))


def _raise(exc: Exception) -> Loaded:
    raise exc


def read_pair(pair: VolumePair) -> tuple[np.ndarray, np.ndarray]:
    """Raw ``(image, label)`` arrays with the same ``(z, y, x)``; DatasetError otherwise."""
    if pair.label is None:
        raise DatasetError(f"no label volume for {pair.source}")
    image, label = read_volume(pair.image), read_volume(pair.label)
    label = _channels_last(label, image.shape[:3])
    if label.shape[:3] != image.shape[:3]:
        raise DatasetError(f"label volume {pair.label.name} is {label.shape}, the image volume {image.shape}")
    return image, label


def slice_samples(
    pair: VolumePair,
    report: ConversionReport,
    *,
    mapping: LabelMapping | None = None,
    masks_of: Callable[[np.ndarray], MaskList] | None = None,
    view: View = "axial",
    flip_how: Flip | None = None,
    unit: str = "slice",
    keep_empty: bool = False,
    fix_label: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    drop_slice: Callable[[np.ndarray], str | None] | None = None,
    slice_labels: Callable[[np.ndarray], Sequence[str]] | None = None,
) -> Iterator[Sample]:
    """Samples of one pair (see the module docstring).

    ``masks_of`` (default: :func:`category_masks` with ``mapping``) turns a label slice into masks;
    ``fix_label(label, raw_image)`` edits the label volume first (e.g. zero it outside the image);
    ``drop_slice(label_slice)`` returns a reason to leave an annotated slice out;
    ``slice_labels(label_slice)`` adds image-level labels of that slice.
    """
    if masks_of is None:
        if mapping is None:
            raise TypeError("slice_samples needs mapping or masks_of")
        masks_of = partial(category_masks, mapping=mapping)
    try:
        image, label = read_pair(pair)
        if fix_label is not None:
            label = fix_label(label, image)
        pixels = window_to_uint8(image)
        if isinstance(mapping, Mapping) and (values := _unmapped(label, mapping)):
            report.note(f"{pair.source}: label value(s) {values} map to no category (left out)")
    except READ_ERRORS as exc:
        yield Sample(pair.source, partial(_raise, exc), patient_id=pair.patient_id, case_id=pair.case_id)
        return
    left_out: dict[str, list[int]] = {}
    for (index, image_slice), (_, label_slice) in zip(slices(pixels, view), slices(label, view)):
        masks = masks_of(flip(label_slice, flip_how)) if label_slice.any() else []
        reason = None
        if not any(mask.any() for _, mask in masks):
            reason = None if keep_empty else f"{unit}s without annotation (keep_empty=True keeps them)"
        elif drop_slice is not None:
            reason = drop_slice(label_slice)
        if reason:
            left_out.setdefault(reason, []).append(index)
            continue
        extra_labels = tuple(slice_labels(label_slice)) if slice_labels else ()
        yield Sample(
            f"{pair.source}#{unit}={index}",
            partial(Loaded, np.ascontiguousarray(flip(image_slice, flip_how)), masks),
            patient_id=pair.patient_id,
            case_id=pair.case_id,
            split=pair.split,
            class_labels=(*pair.class_labels, *extra_labels),
            extra={**pair.extra, unit: index},
        )
    for reason, indices in left_out.items():
        report.exclude(f"{pair.source}#{unit}={index_ranges(indices)}", reason)


def convert_pairs(
    dataset: str,
    categories: Sequence[str],
    pairs: Iterable[VolumePair],
    out_dir: str | Path,
    options: ConvertOptions,
    *,
    report: ConversionReport,
    description: str,
    url: str,
    expected: str,
    **slicing,
) -> ConversionReport:
    """Run every pair's :func:`slice_samples` through :func:`convert_samples`; no pair at all is an error."""
    pairs = list(pairs)
    if not pairs:
        raise DatasetError(f"{dataset}: no image volumes found (expected {expected})")
    samples = (s for pair in pairs for s in slice_samples(pair, report, keep_empty=options.keep_empty, **slicing))
    return convert_samples(
        dataset,
        categories,
        samples,
        out_dir,
        options,
        description=description,
        url=url,
        report=report,
        unit=slicing.get("unit", "slice"),
    )


def zero_outside_image(label: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Labels only where the image has signal: the released CAMUS/MicroSeg converters' sector mask."""
    return np.where(image == 0, 0, label)
