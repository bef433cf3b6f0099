"""Where one converted dataset goes: ``OUT/images/<dataset>__NNNNN.png`` + ``OUT/annotations/<dataset>__coco.json``.

Image modes:

* ``copy`` (default): 8-bit PNGs are copied byte for byte, anything else is written as 8-bit PNG;
* ``symlink``: ``images/<dataset>__NNNNN.<ext>`` links to the original (no duplicated pixels);
* ``reference``: nothing is written, ``file_name`` is the original's absolute path.

Symlink and reference fall back to writing a PNG for files training could not read directly
(16-bit, float, medical formats), and say so in the report.

A file that turns out unreadable while being placed (truncated, over the pixel cap) is a
``DatasetError``; ``place_image_or_skip`` turns it into a skipped sample named in the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image, UnidentifiedImageError
from ultrasam.atomic import all_or_nothing, refuse_existing

from ultrasam_training.data.coco import write_coco
from ultrasam_training.data.convert.options import ConvertOptions
from ultrasam_training.data.errors import DatasetError, OutputExistsError
from ultrasam_training.data.images import (
    EIGHT_BIT_MODES,
    copy_file,
    is_eight_bit_png,
    read_array,
    symlink,
    write_png,
)
from ultrasam_training.data.jsonio import write_json
from ultrasam_training.data.report import ConversionReport


def _directly_readable(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            return image.format in ("PNG", "JPEG") and image.mode in EIGHT_BIT_MODES
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return False


def _verify_png(path: Path) -> None:
    """Refuse a PNG that is copied without decoding if its chunks are truncated or corrupt."""
    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc


class DatasetOutput:
    """Places images and writes the COCO file of one dataset, refusing to overwrite unless asked."""

    def __init__(self, dataset: str, out_dir: str | Path, options: ConvertOptions) -> None:
        self.dataset = dataset
        self.out_dir = Path(out_dir)
        self.images_dir = self.out_dir / "images"
        self.coco_path = self.out_dir / "annotations" / f"{dataset}__coco.json"
        self.report_path = self.out_dir / "annotations" / f"{dataset}__report.json"
        self.image_mode = options.image_mode
        self.overwrite = options.overwrite
        self._count = 0
        self._written: set[str] = set()
        if not self.overwrite:
            if self.coco_path.exists():
                refuse_existing(self.coco_path)
            if self.images_dir.is_dir() and any(self.images_dir.glob(f"{dataset}__*")):
                raise OutputExistsError(
                    f"{self.images_dir} already holds {dataset}__* images; pass overwrite=True (--overwrite)"
                )

    def place_image(self, source: str | Path, report: ConversionReport) -> str:
        """Put the next image in place and return its ``file_name`` for the COCO entry."""
        source = Path(source)
        stem = f"{self.dataset}__{self._count:05d}"
        self._count += 1
        if self.image_mode == "reference" and _directly_readable(source):
            return str(source.resolve())
        if self.image_mode == "symlink" and _directly_readable(source):
            name = stem + source.suffix.lower()
            symlink(source, self.images_dir / name)
        else:
            name = stem + ".png"
            if self.image_mode != "copy":
                report.note(f"{source.name}: not an 8-bit PNG/JPEG, written as {name} instead of {self.image_mode}")
            if is_eight_bit_png(source):
                _verify_png(source)
                copy_file(source, self.images_dir / name)
            else:
                write_png(read_array(source), self.images_dir / name)
        self._written.add(name)
        return f"images/{name}"

    def place_image_or_skip(self, source: str | Path, report: ConversionReport, source_path: str) -> str | None:
        """``place_image``, or None with ``source_path`` named as skipped when the file cannot be read."""
        try:
            return self.place_image(source, report)
        except DatasetError as exc:
            report.skip(source_path, str(exc))
            return None

    def place_array(self, pixels: np.ndarray) -> str:
        """Write decoded pixels (a slice, a video frame, an array file) as the next 8-bit PNG.

        Pixels that are not uint8 are windowed by :func:`ultrasam_training.data.images.to_uint8`;
        converters of volumes window the whole volume first so that its slices stay comparable.
        """
        name = f"{self.dataset}__{self._count:05d}.png"
        self._count += 1
        write_png(pixels, self.images_dir / name)
        self._written.add(name)
        return f"images/{name}"

    def finish(self, coco: Mapping, report: ConversionReport) -> Path:
        """Write the COCO file and the report next to it (both or neither); drop stale images of a replaced run."""
        with all_or_nothing([self.coco_path, self.report_path]):
            path = write_coco(coco, self.coco_path, overwrite=self.overwrite)
            report.coco_path = path
            report.coco = dict(coco)
            write_json(report.to_dict(), self.report_path, overwrite=True, indent=1)
        if self.overwrite and self.images_dir.is_dir():
            for stale in self.images_dir.glob(f"{self.dataset}__*"):
                if stale.name not in self._written:
                    stale.unlink()
        return path
