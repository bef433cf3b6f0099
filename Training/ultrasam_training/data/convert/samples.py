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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from ultrasam_training.data.coco import CocoBuilder
from ultrasam_training.data.convert.output import DatasetOutput
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import image_size, read_array
from ultrasam_training.data.report import ConversionReport

#: errors a bad raw file raises while being read; anything else is a bug and propagates
READ_ERRORS = (DatasetError, OSError, ValueError, KeyError, IndexError, RuntimeError, Image.DecompressionBombError)


@dataclass
class Loaded:
    """What one sample holds: its image and one boolean mask per structure (several per category allowed)."""

    image: Path | np.ndarray  #: a 2-D image file placed as is, or decoded pixels written as PNG
    masks: Sequence[tuple[str, np.ndarray]]  #: (category name, boolean mask of the image's size)


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
    *,
    description: str,
    url: str = "",
    image_mode: str = "copy",
    overwrite: bool = False,
    keep_empty: bool = False,
    limit: int | None = None,
    progress: bool = True,
    report: ConversionReport | None = None,
    unit: str = "img",
) -> ConversionReport:
    """Run ``samples`` into ``out_dir/annotations/<dataset>__coco.json``; see the module docstring.

    ``report`` lets the sample generator itself record problems found while listing the raw
    folder (an unreadable volume, an orphan mask) in the same report.
    """
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be a positive number of images, not {limit}")
    output = DatasetOutput(dataset, out_dir, image_mode=image_mode, overwrite=overwrite)
    builder = CocoBuilder(dataset, list(categories), description=description, url=url)
    report = report if report is not None else ConversionReport(dataset)
    for sample in tqdm(samples, desc=dataset, unit=unit, disable=not progress):
        if limit is not None and report.images >= limit:
            break
        try:
            loaded = sample.load()
            height, width = _shape_of(loaded.image)
        except READ_ERRORS as exc:
            report.skip(sample.source_path, str(exc) or type(exc).__name__)
            continue
        wrong = [name for name, mask in loaded.masks if np.shape(mask)[:2] != (height, width) or np.ndim(mask) != 2]
        if wrong:
            shapes = sorted({str(np.shape(mask)) for _, mask in loaded.masks})
            report.skip(sample.source_path, f"mask size {', '.join(shapes)} differs from the image ({height}, {width})")
            continue
        if not any(np.any(mask) for _, mask in loaded.masks):
            if not keep_empty:
                report.exclude(sample.source_path, "no annotated structure (keep_empty=True keeps such images)")
                continue
        if isinstance(loaded.image, np.ndarray):
            file_name = output.place_array(loaded.image)
        else:
            file_name = output.place_image_or_skip(loaded.image, report, sample.source_path)
            if file_name is None:
                continue
        image_id = builder.add_image(
            file_name, height, width, source_path=sample.source_path, patient_id=sample.patient_id,
            case_id=sample.case_id, class_labels=sample.class_labels, split=sample.split, **sample.extra,
        )
        added = sum(builder.add_mask(image_id, np.asarray(mask, bool), builder.category_id(name))
                    for name, mask in loaded.masks)
        if added == 0:
            report.empty.append(sample.source_path)
        report.images += 1
        report.instances += added
    output.finish(builder.to_dict(), report)
    return report


def read_image_file(path: Path) -> Path:
    """``path`` after checking it decodes (a truncated file is a skipped pair, not a crash later)."""
    read_array(path)
    return path
