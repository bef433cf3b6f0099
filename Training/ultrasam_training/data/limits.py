"""Sizes a COCO file or a raw image may declare, checked before pycocotools or an image decoder sees them.

pycocotools' C code trusts what it is given: a 300-byte JSON declaring a 10^6 x 10^6 image makes
it allocate terabytes (MemoryError) or write past a buffer (SIGSEGV, the whole process dies), and
a polygon vertex at 1e9 px crashes ``frPyObjects`` even on a 10 x 10 image. Pillow decodes
whatever size a header declares. The checks here run first and raise ``DatasetError`` instead.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

from ultrasam_training.data.errors import DatasetError

#: most pixels (height x width) of one image or mask: 12247^2, far above any ultrasound frame
#: (about 1500^2 at most) yet below the 2^32 pycocotools counts in ``uint`` and below Pillow's
#: own decompression-bomb error (about 1.8e8)
MAX_IMAGE_PIXELS = 150_000_000
#: most voxels of one volume file (3-D or 2-D+t) a converter reads: the longest sweeps of the
#: registry (ACOUSLIC-AI, about 3.5e8) fit; windowing copies it as float64 (8 bytes a voxel)
MAX_VOLUME_VOXELS = 1_000_000_000
#: polygon vertices may lie this many image widths/heights outside the image (annotation tools
#: put them a little outside; pycocotools converts coordinates x 5 to C ``int``, so 1e9 crashes it)
POLYGON_MARGIN = 1.0
#: pycocotools draws a polygon by stepping 1/5 px along each edge, allocating per step; one
#: annotation's outline (sum of max(|dx|, |dy|) over its edges) may be this many (height + width)
MAX_OUTLINE_FACTOR = 64


def is_finite_number(value: Any) -> bool:
    """A real number (not a bool) that fits a float: a 400-digit JSON integer does not, and NaN/inf are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def dimension(value: Any) -> int | None:
    """``value`` as an image dimension (an int or numpy integer, an integral float or a digit string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        try:
            return int(value)
        except ValueError:  # more digits than Python converts
            return None
    return None


def image_size_problem(height: Any, width: Any) -> str | None:
    """Why ``height`` x ``width`` is no safe image size (not positive integers, over the cap), or None."""
    rows, cols = dimension(height), dimension(width)
    if rows is None or cols is None or rows <= 0 or cols <= 0:
        return f"height/width {height!r}x{width!r} are not positive integers"
    if rows * cols > MAX_IMAGE_PIXELS:
        return (
            f"size {rows}x{cols} = {rows * cols:,} pixels is over the {MAX_IMAGE_PIXELS:,}-pixel cap "
            "(ultrasam_training.data.limits.MAX_IMAGE_PIXELS)"
        )
    return None


def check_image_size(height: Any, width: Any, where: str) -> tuple[int, int]:
    """``(height, width)`` as ints; raises ``DatasetError`` naming ``where`` when the size is unsafe."""
    problem = image_size_problem(height, width)
    if problem:
        raise DatasetError(f"{where}: {problem}")
    return int(dimension(height)), int(dimension(width))  # type: ignore[arg-type]


def check_pixel_count(size: Sequence[int], where: str) -> None:
    """Refuse an image file whose header declares more than ``MAX_IMAGE_PIXELS`` (a decompression bomb).

    ``size`` is the header's (width, height[, depth...]); nothing has been decoded yet.
    """
    count = math.prod(int(v) for v in size)
    if count > MAX_IMAGE_PIXELS:
        raise DatasetError(
            f"{where}: header declares {'x'.join(str(int(v)) for v in size)} = {count:,} pixels, over the "
            f"{MAX_IMAGE_PIXELS:,}-pixel cap (decompression bomb?); not decoded"
        )


def check_volume_size(size: Sequence[int], where: str) -> None:
    """Refuse a volume whose header declares more than ``MAX_VOLUME_VOXELS``, or slices over ``MAX_IMAGE_PIXELS``."""
    dims = [int(v) for v in size]
    count = math.prod(dims)
    largest_slice = max((a * b for i, a in enumerate(dims) for b in dims[i + 1 :]), default=count)
    if count > MAX_VOLUME_VOXELS or largest_slice > MAX_IMAGE_PIXELS:
        raise DatasetError(
            f"{where}: header declares {'x'.join(map(str, dims))} = {count:,} voxels, over the "
            f"{MAX_VOLUME_VOXELS:,}-voxel / {MAX_IMAGE_PIXELS:,}-pixel-per-slice caps (decompression bomb?); not decoded"
        )
