"""Binary masks <-> COCO segmentations, with pycocotools doing all RLE arithmetic.

COCO files met in the wild store an object as polygons, uncompressed RLE (``counts`` a list),
compressed RLE (``counts`` a string), sometimes with ``size`` written as a string or ``counts``
written as ``str(bytes)``. Everything here turns those into one form: compressed RLE with
``counts`` as ``str`` and ``size`` as ``[height, width]``, which is what this project writes.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Mapping

import numpy as np
from pycocotools import mask as mask_utils
from skimage import measure

from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.limits import MAX_OUTLINE_FACTOR, POLYGON_MARGIN, check_image_size, is_finite_number

RLE = dict  # {"size": [h, w], "counts": str}
#: characters of one number in a compressed RLE string: 6 x 5 bits hold any run of an image under
#: the pixel cap; pycocotools shifts a C ``int`` by 5 x k bits, undefined from 7 characters on
MAX_RLE_NUMBER_CHARS = 6


def encode_mask(mask: np.ndarray) -> RLE:
    """Compressed RLE of a 2-D mask (non-zero = foreground), ``counts`` as ``str`` for JSON."""
    if mask.ndim != 2:
        raise DatasetError(f"a mask must be 2-D, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask != 0, dtype=np.uint8))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def _for_pycocotools(rle: Mapping[str, Any]) -> dict:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def rle_area(rle: Mapping[str, Any]) -> int:
    """Foreground pixel count of a compressed RLE."""
    return int(mask_utils.area(_for_pycocotools(rle)))


def rle_bbox(rle: Mapping[str, Any]) -> list[float]:
    """COCO ``[x, y, w, h]`` of a compressed RLE (w = x_max - x_min + 1), as pycocotools computes it."""
    return [float(v) for v in mask_utils.toBbox(_for_pycocotools(rle))]


def decode_rle(rle: Mapping[str, Any]) -> np.ndarray:
    """Boolean ``(h, w)`` mask of a compressed RLE."""
    return mask_utils.decode(_for_pycocotools(rle)).astype(bool)


def connected_components(mask: np.ndarray) -> Iterator[np.ndarray]:
    """Each connected component of ``mask`` (8-connectivity in 2-D) as a boolean mask, in raster order.

    One component is one instance: the released converters did the same with
    ``skimage.measure.label``'s default (full) connectivity.
    """
    labels = measure.label(mask != 0, connectivity=mask.ndim)
    for region in measure.regionprops(labels):
        component = np.zeros(mask.shape, dtype=bool)
        rows, cols = region.slice
        component[rows, cols] = labels[rows, cols] == region.label
        yield component


def _parse_size(size: Any) -> list[int]:
    if isinstance(size, str):  # e.g. the UltraSam MMOTU sample writes "[533, 958]"
        try:
            size = json.loads(size)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"RLE size {size!r} is not [height, width]") from exc
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, (int, float)) for v in size)):
        raise DatasetError(f"RLE size {size!r} is not [height, width]")
    if any(not is_finite_number(v) or int(v) != v or v < 0 for v in size):
        raise DatasetError(f"RLE size {size!r} must hold two non-negative integers")
    return [int(size[0]), int(size[1])]


def _parse_counts(counts: Any) -> str | list[int]:
    """Compressed counts as ``str`` or uncompressed counts as a list of ints."""
    if isinstance(counts, bytes):
        return counts.decode("ascii")
    if isinstance(counts, list):
        if not all(isinstance(v, int) and v >= 0 for v in counts):
            raise DatasetError("uncompressed RLE counts must be non-negative integers")
        return counts
    if not isinstance(counts, str):
        raise DatasetError(f"RLE counts of type {type(counts).__name__} are not supported")
    stripped = counts.strip()
    if stripped.startswith(("b'", 'b"')) and stripped.endswith(stripped[1]):
        return stripped[2:-1]  # written as str(bytes) by a careless converter
    if stripped.startswith("[") and ("," in stripped or " " in stripped or stripped == "[]"):
        try:
            return _parse_counts(json.loads(stripped))  # an uncompressed list stored as text
        except json.JSONDecodeError as exc:
            raise DatasetError("RLE counts look like a list but do not parse") from exc
    if any(not 48 <= ord(ch) < 48 + 64 for ch in counts):
        raise DatasetError("compressed RLE counts hold characters outside the COCO alphabet")
    return counts


def compressed_runs(counts: str) -> np.ndarray:
    """Run lengths of a compressed RLE string, decoded as pycocotools' ``rleFrString`` does (in int64).

    Decoding here first lets a corrupt string be refused before the C decoder trusts it: runs
    summing past height x width make ``rleDecode`` write past its buffer (SIGSEGV), a string
    ending inside a number makes ``rleFrString`` read past its end.
    """
    codes = np.frombuffer(counts.encode("ascii"), np.uint8).astype(np.int64) - 48
    if codes.size == 0:
        return np.zeros(0, np.int64)
    more = (codes & 0x20) != 0
    if more[-1]:
        raise DatasetError("compressed RLE does not decode: the string ends inside a number")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > MAX_RLE_NUMBER_CHARS:
        raise DatasetError(f"compressed RLE does not decode: a number spans over {MAX_RLE_NUMBER_CHARS} characters")
    position = np.arange(codes.size) - np.repeat(starts, lengths)
    values = np.add.reduceat((codes & 0x1F) << (5 * position), starts)
    values -= ((codes[ends] & 0x10) != 0) * (np.int64(1) << (5 * lengths))  # sign of the last 5-bit group
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])  # from the 4th number on, each is a delta to the one two before
    runs[2::2] = np.cumsum(values[2::2])
    return runs


def _check_compressed_runs(counts: str, height: int, width: int) -> None:
    runs = compressed_runs(counts)
    if (runs < 0).any():
        raise DatasetError("compressed RLE is corrupt (a run of negative length)")
    total = int(runs.sum())
    if total != height * width:
        raise DatasetError(
            f"compressed RLE is corrupt (its runs cover {total} pixels, not height x width = {height * width})"
        )


def _check_polygon_extent(polygons: list[list[float]], height: int, width: int) -> None:
    """Refuse vertices far outside the image and outlines so long that pycocotools would exhaust memory."""
    outline = 0.0
    for polygon in polygons:
        points = np.asarray(polygon, np.float64).reshape(-1, 2)
        low = -POLYGON_MARGIN * np.array([width, height])
        if (points < low).any() or (points > np.array([width, height]) - low).any():
            raise DatasetError(
                f"polygon vertices lie more than {POLYGON_MARGIN:g} image width/height outside the {height}x{width} image"
            )
        steps = np.abs(np.diff(np.vstack([points, points[:1]]), axis=0)).max(axis=1)
        outline += float(steps.sum())
    if outline > MAX_OUTLINE_FACTOR * (height + width):
        raise DatasetError(
            f"polygon outline of {outline:.0f} px is over {MAX_OUTLINE_FACTOR} x (height + width) of the image"
        )


def _polygons_to_rle(segmentation: list, height: int, width: int) -> RLE:
    if not segmentation:
        raise DatasetError("empty polygon list")
    polygons = []
    for polygon in segmentation:
        if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
            raise DatasetError("a polygon needs an even number (>= 6) of coordinates")
        if not all(is_finite_number(v) for v in polygon):
            raise DatasetError("polygon coordinates must be finite numbers")
        polygons.append([float(v) for v in polygon])
    _check_polygon_extent(polygons, height, width)
    merged = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    return {"size": [height, width], "counts": merged["counts"].decode("ascii")}


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> RLE:
    """Normalise any COCO ``segmentation`` of an image of ``height`` x ``width`` to compressed RLE.

    Polygons of one annotation are merged into one mask (they describe one object).
    Raises ``DatasetError`` when the segmentation is malformed or sized for another image, and
    before any pycocotools call when the image size or the segmentation could crash it (see
    ``ultrasam_training.data.limits``).
    """
    height, width = check_image_size(height, width, "image")
    if isinstance(segmentation, list):
        return _polygons_to_rle(segmentation, height, width)
    if not isinstance(segmentation, Mapping) or "counts" not in segmentation or "size" not in segmentation:
        raise DatasetError("segmentation is neither a polygon list nor an RLE dict with size and counts")
    size = _parse_size(segmentation["size"])
    if size != [height, width]:
        raise DatasetError(f"RLE size {size} differs from the image size {[height, width]}")
    counts = _parse_counts(segmentation["counts"])
    if isinstance(counts, list):
        if sum(counts) != size[0] * size[1]:
            raise DatasetError(f"uncompressed RLE counts sum to {sum(counts)}, not h*w = {size[0] * size[1]}")
        rle = mask_utils.frPyObjects({"size": size, "counts": counts}, size[0], size[1])
        return {"size": size, "counts": rle["counts"].decode("ascii")}
    if not counts:
        raise DatasetError("compressed RLE counts are empty")
    _check_compressed_runs(counts, height, width)
    return _canonical_rle({"size": size, "counts": counts})


def _canonical_rle(rle: RLE) -> RLE:
    """Check a compressed RLE really decodes to its size, and return it in canonical form.

    The runs were checked to cover height x width exactly (``_check_compressed_runs``), so the C
    decoder neither reads nor writes out of bounds. A string that round-trips through decode/encode is sound; one that does not is accepted only
    if it decodes to 0/1 values whose sum equals the RLE's own area, and is then re-encoded.
    """
    try:
        decoded = mask_utils.decode(_for_pycocotools(rle))
    except ValueError as exc:
        raise DatasetError(f"compressed RLE does not decode: {exc}") from exc
    canonical = encode_mask(decoded.astype(bool)) if decoded.max(initial=0) <= 1 else None
    if canonical is not None and canonical["counts"] == rle["counts"]:
        return rle
    if canonical is None or int(decoded.sum()) != rle_area(rle):
        raise DatasetError("compressed RLE is corrupt (its runs do not cover height x width)")
    return canonical


def decode_annotation_mask(annotation: Mapping[str, Any], height: int, width: int) -> np.ndarray:
    """Boolean ``(height, width)`` mask of a COCO annotation in any of the supported encodings."""
    if "segmentation" not in annotation:
        raise DatasetError(f"annotation {annotation.get('id')!r} has no segmentation")
    return decode_rle(segmentation_to_rle(annotation["segmentation"], height, width))
