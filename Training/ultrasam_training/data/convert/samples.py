"""The loop every dataset converter shares: samples in, COCO and a report out.

A converter only knows its dataset's layout. It yields :class:`Sample` objects (a source path
for the report, ids and labels, and a ``load`` callable) and :func:`convert_samples` does the rest
the same way for all 43 datasets: load lazily, skip and name a bad pair (unreadable or truncated
file, decompression bomb over ``limits.MAX_IMAGE_PIXELS``, size mismatch, missing mask) and go on
with the next, leave out images without any structure unless asked (counted in the
report), place the image (file copied/linked, or pixels written as PNG), add one instance per
connected component per structure, and write ``annotations/<dataset>__coco.json`` with its report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Iterable, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from ultrasam_training.data.coco import CocoBuilder
from ultrasam_training.data.convert.options import ConvertOptions
from ultrasam_training.data.convert.output import DatasetOutput
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import image_size, read_array, read_gray_mask
from ultrasam_training.data.report import ConversionReport

#: why an image without any annotated structure is left out (the same words for every converter)
EMPTY_EXCLUDED = "no annotated structure (keep_empty=True keeps such images)"
#: errors a bad raw file raises while being read; anything else is a bug and propagates
READ_ERRORS = (DatasetError, OSError, ValueError, KeyError, IndexError, RuntimeError, Image.DecompressionBombError)


@dataclass
class Loaded:
    """What one sample holds: its image and one boolean mask per structure (several per category allowed)."""

    image: Path | np.ndarray  #: a 2-D image file placed as is, or decoded pixels written as PNG
    masks: Sequence[tuple[str, np.ndarray]]  #: (category name, boolean mask of the image's size)
    mask_sources: Sequence[str] = ()  #: the file each mask came from, kept as ``source_mask`` (or none)


@dataclass
class Sample:
    """One future COCO image. ``load`` raises one of :data:`READ_ERRORS` for a bad pair (then it is skipped)."""

    source_path: str  #: the raw file (and frame or slice) it comes from, relative to the raw folder
    load: Callable[[], Loaded]
    patient_id: str | None = None
    case_id: str | None = None
    class_labels: Sequence[str] = ()
    split: str | None = None  #: an official split the dataset publishes ("train", "val", "test")
    extra: dict = field(default_factory=dict)  #: further image fields (e.g. ``frame``, ``slice``)


def masks_from_label_map(label_map: np.ndarray, mapping: dict[int, str]) -> list[tuple[str, np.ndarray]]:
    """``[(name, label_map == value), ...]`` for every mapped value (the label-map datasets)."""
    return [(name, label_map == value) for value, name in mapping.items()]


def unmapped_values(label_map: np.ndarray, mapping: dict[int, str], background: int = 0) -> list[int]:
    """Values in ``label_map`` that are neither background nor mapped (worth a report note)."""
    return sorted(int(v) for v in np.unique(label_map) if int(v) != background and int(v) not in mapping)


def natural_key(text: str) -> tuple:
    """Sort key that puts ``benign (2)`` before ``benign (10)``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def only_requested(samples: list[Sample], only: Collection[str] | None, report: ConversionReport) -> list[Sample]:
    """The samples whose ``source_path`` is in ``only`` (all when None); a requested path that is
    not there is named as skipped, so a typo in a subset list is seen."""
    if only is None:
        return samples
    wanted = set(only)
    for missing in sorted(wanted - {sample.source_path for sample in samples}, key=natural_key):
        report.skip(missing, "requested but not found")
    return [sample for sample in samples if sample.source_path in wanted]


def _shape_of(image: Path | np.ndarray) -> tuple[int, int]:
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
            raise DatasetError(f"pixels of shape {image.shape} are not a 2-D grey or RGB(A) image")
        return int(image.shape[0]), int(image.shape[1])
    return image_size(image)


def convert_samples(
    dataset: str,
    categories: Sequence[str],
    samples: Iterable[Sample],
    out_dir: str | Path,
    options: ConvertOptions,
    *,
    description: str,
    url: str = "",
    report: ConversionReport | None = None,
    unit: str = "img",
    summarise: Callable[[ConversionReport], None] | None = None,
) -> ConversionReport:
    """Run ``samples`` into ``out_dir/annotations/<dataset>__coco.json``; see the module docstring.

    ``report`` lets the sample generator itself record problems found while listing the raw
    folder (an unreadable volume, an orphan mask) in the same report; ``summarise(report)`` runs
    after the last sample, before the report is written, for notes that add up over all samples.
    """
    output = DatasetOutput(dataset, out_dir, options)
    builder = CocoBuilder(dataset, list(categories), description=description, url=url)
    report = report if report is not None else ConversionReport(dataset)
    for sample in tqdm(samples, desc=dataset, unit=unit, disable=not options.progress):
        if options.limit is not None and report.images >= options.limit:
            break
        loaded = _load(sample, report, options.keep_empty)
        if loaded is not None:
            _add(sample, *loaded, output, builder, report)
    if summarise is not None:
        summarise(report)
    output.finish(builder.to_dict(), report)
    return report


def _load(sample: Sample, report: ConversionReport, keep_empty: bool) -> tuple[Loaded, tuple[int, int]] | None:
    """The sample's pixels, masks and ``(height, width)``, or None once it is reported as skipped or excluded."""
    try:
        loaded = sample.load()
        height, width = _shape_of(loaded.image)
    except READ_ERRORS as exc:
        report.skip(sample.source_path, str(exc) or type(exc).__name__)
        return None
    if any(np.shape(mask)[:2] != (height, width) or np.ndim(mask) != 2 for _, mask in loaded.masks):
        shapes = sorted({str(np.shape(mask)) for _, mask in loaded.masks})
        report.skip(sample.source_path, f"mask size {', '.join(shapes)} differs from the image ({height}, {width})")
        return None
    if not keep_empty and not any(np.any(mask) for _, mask in loaded.masks):
        report.exclude(sample.source_path, EMPTY_EXCLUDED)
        return None
    return loaded, (height, width)


def _add(
    sample: Sample,
    loaded: Loaded,
    size: tuple[int, int],
    output: DatasetOutput,
    builder: CocoBuilder,
    report: ConversionReport,
) -> None:
    """Place the image and add one instance per connected component of each mask."""
    if isinstance(loaded.image, np.ndarray):
        file_name = output.place_array(loaded.image)
    else:
        file_name = output.place_image_or_skip(loaded.image, report, sample.source_path)
        if file_name is None:
            return
    image_id = builder.add_image(
        file_name,
        *size,
        source_path=sample.source_path,
        patient_id=sample.patient_id,
        case_id=sample.case_id,
        class_labels=sample.class_labels,
        split=sample.split,
        **sample.extra,
    )
    added = 0
    for index, (name, mask) in enumerate(loaded.masks):
        fields = {"source_mask": loaded.mask_sources[index]} if loaded.mask_sources else {}
        added += builder.add_mask(image_id, np.asarray(mask, bool), builder.category_id(name), **fields)
    if added == 0:
        report.empty.append(sample.source_path)
    report.images += 1
    report.instances += added


def load_label_map(
    image: Path, mask: Path, mapping: dict[int, str], source: str, report: ConversionReport, unmapped_are: str
) -> Loaded:
    """An image and one mask per mapped value of its grey label map; other values are noted, never
    dropped in silence (``unmapped_are`` says what they are not, e.g. ``"neither 127 nor 255"``)."""
    read_image_file(image)
    labels = read_gray_mask(mask)
    extra = unmapped_values(labels, mapping)
    if extra:
        report.note(f"{source}: mask values {extra[:8]} are {unmapped_are}; left out")
    return Loaded(image, masks_from_label_map(labels, mapping))


def read_image_file(path: Path) -> Path:
    """``path`` after checking it decodes (a truncated file is a skipped pair, not a crash later)."""
    read_array(path)
    return path
