"""Deterministic prompts derived from a ground-truth instance, in the predictor's pixel convention.

Points are ``(x, y)`` = (column, row) with integer values at pixel centres; boxes are COCO
``[x, y, x + w, y + h]`` (exclusive max corner), which is what ``Predictor.predict`` takes.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from scipy import ndimage

from ultrasam_training.evaluation.errors import EvaluationError

PROMPT_KINDS = ("box", "point", "inside")


def centroid_point(mask: np.ndarray) -> np.ndarray:
    """Mean column and mean row of the foreground, the original's test point (may lie outside a ring)."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise EvaluationError("an empty mask has no centroid")
    return np.array([cols.mean(), rows.mean()], np.float64)


def interior_point(mask: np.ndarray) -> np.ndarray:
    """The foreground pixel farthest from any background pixel or the image border.

    Distance-transform maximum (``scipy.ndimage.distance_transform_edt`` on the zero-padded
    mask, so the border counts as background); ties go to the first pixel in raster order.
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        raise EvaluationError("an empty mask has no interior point")
    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return np.array([col, row], np.float64)


def coco_box(annotation: Mapping[str, Any]) -> np.ndarray:
    """The exact GT box ``[x, y, x + w, y + h]`` from the annotation's COCO ``bbox``."""
    bbox = annotation.get("bbox")
    if bbox is None or len(bbox) != 4:
        raise EvaluationError(f"annotation {annotation.get('id')!r} has no COCO bbox")
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise EvaluationError(f"annotation {annotation.get('id')!r} has an empty bbox {list(bbox)}")
    return np.array([x, y, x + w, y + h], np.float64)


def prompt_arguments(kind: str, annotation: Mapping[str, Any], mask: np.ndarray) -> dict[str, np.ndarray]:
    """Keyword arguments for ``Segmenter.segment`` that prompt ``kind`` gives for one instance."""
    if kind == "box":
        return {"box": coco_box(annotation)}
    if kind == "point":
        return {"points": centroid_point(mask)[None], "labels": np.ones(1, np.int64)}
    if kind == "inside":
        return {"points": interior_point(mask)[None], "labels": np.ones(1, np.int64)}
    raise EvaluationError(f"unknown prompt kind {kind!r}; choose from {', '.join(PROMPT_KINDS)}")
