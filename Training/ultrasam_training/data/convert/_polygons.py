"""Polygon annotations -> boolean masks, shared by the AUL, UBPD and GIST514-DB converters.

Two rasterisers, each the one its released converter used, so areas match the UltraSam data:

* :func:`polygon_mask`: PIL ``ImageDraw.polygon`` with fill *and* outline (AUL point lists,
  labelme shapes), so boundary pixels belong to the object;
* :func:`coco_segmentation_mask`: pycocotools ``frPyObjects`` (COCO polygon lists or RLE, GIST514-DB).

:func:`read_json_file` reads annotation JSON whatever its encoding (labelme files written on
Chinese Windows are often GBK) and raises ``DatasetError`` for a broken file, so the pair is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.masks import decode_rle, segmentation_to_rle

_ENCODINGS = ("utf-8-sig", "gb18030")


def read_json_file(path: str | Path) -> Any:
    """Parsed JSON of ``path`` (UTF-8, else GB18030); ``DatasetError`` when missing or malformed."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    for encoding in _ENCODINGS:
        try:
            return json.loads(raw.decode(encoding))
        except UnicodeDecodeError:
            continue
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path.name} is not valid JSON: {exc}") from exc
    raise DatasetError(f"{path.name}: text encoding not recognised (tried {', '.join(_ENCODINGS)})")


def _points(points: Any) -> list[tuple[float, float]]:
    if not isinstance(points, Sequence) or isinstance(points, (str, bytes)):
        raise DatasetError("polygon points must be a list of [x, y] pairs")
    pairs = []
    for point in points:
        if not isinstance(point, Sequence) or len(point) < 2:
            raise DatasetError(f"polygon point {point!r} is not an [x, y] pair")
        x, y = point[0], point[1]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in (x, y)):
            raise DatasetError(f"polygon point {point!r} holds non-numeric coordinates")
        pairs.append((float(x), float(y)))
    return pairs


def polygon_mask(points: Any, height: int, width: int) -> np.ndarray:
    """Boolean ``(height, width)`` mask of one polygon given as ``[[x, y], ...]`` (>= 3 points)."""
    pairs = _points(points)
    if len(pairs) < 3:
        raise DatasetError(f"a polygon needs at least 3 points, got {len(pairs)}")
    canvas = Image.new("L", (int(width), int(height)), 0)
    ImageDraw.Draw(canvas).polygon(pairs, fill=1, outline=1)
    return np.asarray(canvas, dtype=bool)


def rectangle_points(points: Any) -> list[tuple[float, float]]:
    """The four corners of a labelme ``rectangle`` shape given by two opposite corners."""
    pairs = _points(points)
    if len(pairs) != 2:
        raise DatasetError(f"a rectangle needs 2 corner points, got {len(pairs)}")
    (x0, y0), (x1, y1) = pairs
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def coco_segmentation_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Boolean mask of a COCO ``segmentation`` (polygon list merged into one object, or RLE)."""
    return decode_rle(segmentation_to_rle(segmentation, height, width))
