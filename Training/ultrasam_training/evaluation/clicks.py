"""Interactive evaluation: the standard click simulator and the number-of-clicks (NoC) metric.

The simulated user clicks the ground truth's interior maximum first. Every next click goes into
the larger error region (false negatives -> positive click, false positives -> negative click),
at that region's distance-transform maximum: the pixel deepest inside the error, where a user
would click. "Larger" is measured, by default, as in the RITM/f-BRS protocol that defines
NoC@85/90: the region whose deepest pixel lies deeper (``rule="distance"``); ``rule="area"``
compares pixel counts instead. Error pixels already clicked are not offered again, so a model
that ignores a click does not receive the same click forever.

The trainer's click simulation (``ultrasam_training.train.click_rounds``) follows the same rule
through :func:`next_click` with a seeded generator: the region is chosen the same way, and the click
is drawn uniformly among the region's pixels at least half as deep as its deepest one, rather than
always at the deepest (so training sees varied clicks, from streams the evaluator never uses).

The previous low-resolution logits are fed back as ``mask_input`` by default, as SAM's
interactive loop does; ``feed_logits=False`` turns that off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol

import numpy as np
from scipy import ndimage

from ultrasam_training.evaluation.errors import EvaluationError
from ultrasam_training.evaluation.metrics import iou

ClickRule = Literal["distance", "area"]
CLICK_RULES = ("distance", "area")
NOC_CAP = 20
NOC_THRESHOLDS = (0.85, 0.90)


class _HasMaskAndLogits(Protocol):
    mask: np.ndarray
    logits: np.ndarray | None


SegmentFunction = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], _HasMaskAndLogits]
"""``segment(points (N, 2) xy, labels (N,), mask_input (1, 256, 256) or None) -> result``."""


@dataclass(frozen=True)
class Click:
    """A simulated click at pixel centre ``(x, y)`` = (column, row)."""

    x: int
    y: int
    positive: bool


@dataclass
class ClickTrace:
    """The clicks of one instance and the IoU after each of them."""

    clicks: list[Click] = field(default_factory=list)
    ious: list[float] = field(default_factory=list)

    def iou_after(self, count: int) -> float:
        """IoU after ``count`` clicks; past the end of a run that stopped because nothing was left
        to click, the mask no longer changes, so the last IoU holds."""
        if count < 1:
            raise EvaluationError("the IoU after clicks is defined from one click on")
        if not self.ious:
            return 0.0
        return self.ious[min(count, len(self.ious)) - 1]

    def noc(self, threshold: float, cap: int = NOC_CAP) -> int:
        return number_of_clicks(self.ious, threshold, cap)


def number_of_clicks(ious: list[float] | np.ndarray, threshold: float, cap: int = NOC_CAP) -> int:
    """Clicks needed to reach IoU ≥ ``threshold``; ``cap`` when the first ``cap`` clicks never do."""
    for count, value in enumerate(list(ious)[:cap], start=1):
        if value >= threshold:
            return count
    return cap


def _depth(region: np.ndarray) -> np.ndarray:
    """Distance of each region pixel to the nearest non-region pixel, the image border included.

    Computed on the region's bounding box plus a one-pixel ring only: every pixel of that ring is
    outside the region (or outside the image), and any farther non-region pixel is at least as far as
    its projection onto the ring, so the result equals the whole-image transform, at a fraction of the cost.
    """
    depth = np.zeros(region.shape, np.float64)
    rows, cols = np.nonzero(region.any(axis=1))[0], np.nonzero(region.any(axis=0))[0]
    if not len(rows):
        return depth
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    depth[window] = ndimage.distance_transform_edt(np.pad(region[window], 1))[1:-1, 1:-1]
    return depth


#: With a generator, clicks are drawn among pixels at least this fraction of the region's depth.
DRAW_DEPTH_FRACTION = 0.5


def next_click(
    prediction: np.ndarray,
    truth: np.ndarray,
    rule: ClickRule = "distance",
    exclude: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> Click | None:
    """The simulated user's next click, or ``None`` when no error pixel is left to click.

    Ties: with equal sizes the negative click wins (as in RITM's ``fn_max > fp_max``); within a
    region the first deepest pixel in raster order is chosen — or, given ``rng``, a pixel drawn
    uniformly among those at least ``DRAW_DEPTH_FRACTION`` of the deepest one's depth.
    """
    if rule not in CLICK_RULES:
        raise EvaluationError(f"unknown click rule {rule!r}; choose from {', '.join(CLICK_RULES)}")
    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    if prediction.shape != truth.shape:
        raise EvaluationError(f"prediction shape {prediction.shape} differs from ground truth {truth.shape}")
    false_negative = truth & ~prediction
    false_positive = prediction & ~truth
    if exclude is not None:
        false_negative &= ~exclude
        false_positive &= ~exclude
    if not false_negative.any() and not false_positive.any():
        return None
    depth_fn, depth_fp = _depth(false_negative), _depth(false_positive)
    if rule == "distance":
        positive = bool(depth_fn.max() > depth_fp.max())
    else:
        positive = bool(false_negative.sum() > false_positive.sum())
    depth = depth_fn if positive else depth_fp
    if rng is None:
        row, col = np.unravel_index(int(np.argmax(depth)), depth.shape)
    else:
        rows, cols = np.nonzero(depth >= DRAW_DEPTH_FRACTION * depth.max())
        pick = int(rng.integers(len(rows)))
        row, col = rows[pick], cols[pick]
    return Click(x=int(col), y=int(row), positive=positive)


def simulate_clicks(
    segment: SegmentFunction,
    truth: np.ndarray,
    max_clicks: int,
    *,
    stop_iou: float | None = None,
    min_clicks: int = 0,
    feed_logits: bool = True,
    rule: ClickRule = "distance",
) -> ClickTrace:
    """Click on ``truth`` up to ``max_clicks`` times, calling ``segment`` with all clicks so far.

    Stops early once IoU ≥ ``stop_iou`` after at least ``min_clicks`` clicks (NoC needs no more),
    or when the prediction is perfect.
    """
    if max_clicks < 1:
        raise EvaluationError("max_clicks must be at least 1")
    truth = np.asarray(truth, bool)
    if not truth.any():
        raise EvaluationError("cannot simulate clicks on an empty ground-truth mask")
    trace = ClickTrace()
    prediction = np.zeros_like(truth)
    clicked = np.zeros_like(truth)
    logits: np.ndarray | None = None
    for _ in range(max_clicks):
        click = next_click(prediction, truth, rule=rule, exclude=clicked)
        if click is None:
            break
        trace.clicks.append(click)
        clicked[click.y, click.x] = True
        points = np.array([[c.x, c.y] for c in trace.clicks], np.float64)
        labels = np.array([1 if c.positive else 0 for c in trace.clicks], np.int64)
        mask_input = None if (logits is None or not feed_logits) else np.asarray(logits)[None]
        result = segment(points, labels, mask_input)
        prediction = np.asarray(result.mask, bool)
        logits = result.logits
        trace.ious.append(iou(prediction, truth))
        if stop_iou is not None and trace.ious[-1] >= stop_iou and len(trace.ious) >= min_clicks:
            break
    return trace
