"""Shared pieces of the 2-D converters with classes, colour masks or CSV metadata (group B).

Finding the dataset folder inside a download, indexing image/mask folders by file stem, reading
metadata tables (comma or semicolon CSV), thresholding and colour-decoding mask files, and
resizing a mask to its image. Each converter module keeps only its dataset's layout and labels.
"""

from __future__ import annotations

import csv
from collections import deque
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
from PIL import Image

from ultrasam_training.data.convert.samples import Loaded, natural_key, read_image_file
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import IMAGE_SUFFIXES, read_color_mask, read_gray_mask
from ultrasam_training.data.report import ConversionReport

__all__ = [
    "binary_mask",
    "color_masks",
    "find_root",
    "index_files",
    "load_colour_mask",
    "natural_key",
    "read_table",
    "relative",
    "resize_nearest",
    "sorted_paths",
]


def sorted_paths(paths: Iterable[Path]) -> list[Path]:
    """Paths in natural order of their names (``case2`` before ``case10``)."""
    return sorted(paths, key=lambda p: natural_key(p.as_posix()))


def find_root(raw_dir: str | Path, is_root: Callable[[Path], bool], expected: str, *, depth: int = 3) -> Path:
    """``raw_dir`` or the first sub-folder (breadth first, natural order, ``depth`` levels) that ``is_root``.

    Downloads unpack into one or two wrapper folders (``archive/``, ``<name>/<name>/``); this
    accepts the raw folder itself or any of those. ``expected`` names the layout in the error.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DatasetError(f"{raw_dir} is not a folder (expected {expected})")
    queue = deque([(raw_dir, 0)])
    while queue:
        folder, level = queue.popleft()
        if is_root(folder):
            return folder
        if level < depth:
            queue.extend((child, level + 1) for child in sorted_paths(p for p in folder.iterdir() if p.is_dir()))
    raise DatasetError(f"{raw_dir}: layout not recognised (expected {expected})")


def _is_image_file(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and not name.startswith(".") and any(name.endswith(s) for s in IMAGE_SUFFIXES)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def index_files(folder: Path, report: ConversionReport | None = None, *, strip_prefix: str = "") -> dict[str, Path]:
    """``{stem: path}`` of the image files directly in ``folder`` (natural order).

    ``strip_prefix`` removes a naming prefix from the key (BUS-BRA ``mask_0001-l`` -> ``0001-l``).
    A second file with the same stem (``a.png`` and ``a.jpg``) is left out and noted in ``report``.
    """
    index: dict[str, Path] = {}
    if not folder.is_dir():
        return index
    for path in sorted_paths(p for p in folder.iterdir() if _is_image_file(p)):
        stem = _stem(path)
        if strip_prefix and stem.startswith(strip_prefix):
            stem = stem[len(strip_prefix) :]
        if stem in index:
            if report is not None:
                report.note(f"{path}: same name as {index[stem].name}; left out")
        else:
            index[stem] = path
    return index


def read_table(path: Path, key: str) -> dict[str, dict[str, str]]:
    """Rows of a CSV metadata file keyed by column ``key`` (delimiter ``,`` or ``;``, BOM tolerated)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    header = text.splitlines()[0] if text else ""
    delimiter = ";" if header.count(";") > header.count(",") else ","
    rows = list(csv.DictReader(text.splitlines(), delimiter=delimiter))
    if not rows or key not in rows[0]:
        columns = ", ".join(rows[0]) if rows else "none"
        raise DatasetError(f"{path}: no {key!r} column (columns: {columns})")
    return {row[key].strip(): {k.strip(): (v or "").strip() for k, v in row.items() if k} for row in rows}


def binary_mask(path: Path, threshold: int = 128) -> np.ndarray:
    """A grey (or grey-as-RGB) mask file as booleans: ``value >= threshold``."""
    return read_gray_mask(path) >= threshold


def color_masks(
    path: Path, colors: Mapping[tuple[int, int, int], str]
) -> tuple[list[tuple[str, np.ndarray]], list[tuple]]:
    """``[(category, pixels of that exact RGB colour)]`` and the other non-black colours found (unmapped)."""
    rgb = read_color_mask(path)
    masks = [(name, np.all(rgb == np.asarray(color, dtype=rgb.dtype), axis=-1)) for color, name in colors.items()]
    known = np.zeros(rgb.shape[:2], dtype=bool)
    for _, mask in masks:
        known |= mask
    rest = rgb[~known & rgb.any(axis=-1)]
    unmapped = [tuple(int(v) for v in color) for color in np.unique(rest, axis=0)] if rest.size else []
    return masks, unmapped


def load_colour_mask(
    image: Path,
    mask: Path,
    colors: Mapping[tuple[int, int, int], str],
    source: str,
    report: ConversionReport,
    unmapped_are: str,
) -> Loaded:
    """An image and one mask per colour of its RGB mask; other colours are noted, never dropped in
    silence (``unmapped_are`` says what they are not, e.g. ``"neither green nor red"``)."""
    read_image_file(image)
    masks, unmapped = color_masks(mask, colors)
    if unmapped:
        report.note(f"{source}: mask colours {unmapped[:5]} are {unmapped_are}; left out")
    return Loaded(image, masks)


def resize_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``mask`` resized to ``(height, width)`` with nearest-neighbour sampling (values kept exactly)."""
    height, width = shape
    return np.asarray(Image.fromarray(np.ascontiguousarray(mask)).resize((width, height), Image.NEAREST))


def relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in POSIX form (the ``source_path`` of a sample)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
