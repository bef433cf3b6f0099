"""Prompts per frame, the one prompt rule, and the one place where physical prompts (markups) become frame pixels.

Pixel conventions (those of :class:`ultrasam.predictor.Predictor`):

* a point is ``(x, y)`` = (column, row) with integer values at pixel *centres*: pixel ``c``
  covers the half-open ``[c - 0.5, c + 0.5)``;
* a box is ``[x0, y0, x1, y1]`` in **pixel-edge** coordinates, COCO's ``[x, y, x + w, y + h]``:
  pixel ``c`` spans ``[c, c + 1)``, so the box of a mask covering columns ``a..b`` is
  ``x0 = a, x1 = b + 1`` (exclusive max corner). A physical box maps to
  ``x0 = x_min + 0.5, x1 = x_max + 0.5`` where ``x_min``/``x_max`` are pixel-centre coordinates
  of its extent: nothing is rounded, the model gets the exact sub-pixel box.

The prompt rule, one validator (:func:`validate_points`, :func:`validate_boxes`) used by
:class:`FramePrompts`, :func:`check_on_frame` (so the CLI, markups and :mod:`ultrasam.pipeline`) and
:meth:`ultrasam.predictor.Predictor.predict` alike. It never writes to its inputs: it returns new
arrays (and :func:`check_on_frame` a new :class:`FramePrompts`).

* **Edge rule.** A point is on a ``W x H`` image iff ``-0.5 <= x < W - 0.5`` and
  ``-0.5 <= y < H - 0.5``: half-open like the pixels, so ``x = W - 0.5`` (the outer edge of the
  last column, where a column ``W`` would start) is off the image, and every point on it lies in
  exactly one pixel, ``floor(x + 0.5)``. Slices use the same half-open rule (below).
* **Box rule.** A box must be finite and at least :data:`MIN_BOX_SIDE` pixel wide and high (else it
  is degenerate). A box partly outside the image is clipped to ``[0, W] x [0, H]``; a box whose
  clipped part is less than one pixel wide or high does not intersect the image and is refused.
* **Shapes and limits.** Points are ``(N, 2)`` (or one ``(x, y)``) with one label each, 1
  (positive) or 0 (negative); a box is ``[x0, y0, x1, y1]`` (the predictor also takes ``(B, 4)``);
  at most :data:`MAX_POINTS_PER_FRAME` clicks per frame, since the decoder attends over every point
  token and its memory grows with the count (10 000 points asked for 3.2 GB); coordinates must be
  finite (``inf`` or ``NaN`` names no pixel, and clipping an infinite box would silently turn it
  into "the whole image").

Every refusal is a :class:`~ultrasam.errors.PromptError` naming the prompt (``point 3``, ``box 2``,
or the markup it came from) and the frame.

Slice assignment: frame ``n`` of a stack owns the slab ``n - 0.5 <= s < n + 0.5`` of the
continuous slice coordinate ``s`` (half a voxel either side of its centre plane).

* A point goes to the frame whose slab holds it. A point outside every slab, or off the image,
  is an error naming the point and where it lies; points are never dropped silently.
* An ROI is cut by each slab it crosses: the box on frame ``n`` is the bounding rectangle of
  the part of the (possibly oblique) ROI inside the slab, computed exactly from its 8 corners
  and the crossings of its 12 edges with the slab planes. For an ROI aligned with the slicing
  axis this is the projection of its 8 corners on every slice it spans. An ROI at most one slice
  thick (drawn on a slice view; through an oblique or transformed geometry its faces land a
  rounding error beyond its slab) means "this box on this slice": it belongs to the one slab
  holding its middle, with the bounding rectangle of its 8 corners, and bounds nothing else. Slices where the cut
  is refused by the box rule (less than one pixel wide, or missing the image) are skipped; if
  none remains the ROI is an error (empty intersection, or degenerate box). Only the slices of
  the stack are visited, however far the ROI reaches beyond them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ultrasam.errors import PromptError
from ultrasam.frames import Frame, FrameStack
from ultrasam.markups import MarkupPoint, MarkupRoi, Markups

MIN_BOX_SIDE = 1.0
"""A box narrower or lower than one pixel carries no shape: it is degenerate."""

MAX_POINTS_PER_FRAME = 1000
"""Most clicks one frame (one decoder call) takes. SAM's decoder has no fixed token count, but its
attention grows with the points: the token self-attention alone is 8 heads x N^2 floats, 3.2 GB at
10 000 points; at 1000 a decoder pass took ~0.3 GB and ~8 s on a CPU (measured). Real prompt sets
are a handful of clicks."""

SLICE_ROI_TOLERANCE = 1e-6
"""How far (in slices) beyond one slice's thickness an ROI may reach and still be a box on one slice:
Slicer places an ROI drawn on a slice view one voxel thick, and an oblique IJK-to-RAS plus a parent
transform move its faces by ~1e-9 slice."""

_EPS = 1e-9
# The 12 edges of a box whose corner n has bit a set when it is on the + side of axis a.
_EDGES = [(n, n | (1 << a)) for n in range(8) for a in range(3) if not n & (1 << a)]


# ---------------------------------------------------------------------------------- the prompt rule
def validate_points(
    points,
    labels=None,
    image_hw: tuple[int, int] | None = None,
    where: str = "",
    names: tuple[str, ...] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """New ``(N, 2)`` float points and ``(N,)`` int64 labels (``None``: all positive) under the prompt rule.

    Checks shape, labels, the point cap, finiteness and, given ``image_hw = (H, W)``, the edge
    rule; ``image_hw=None`` skips the edge rule (a :class:`FramePrompts` does not know its image).
    The first bad point is named by ``names`` or as ``point <n>`` (1-based), on ``where``.
    """
    xy = _as_float(points, "points", where)
    if xy.ndim == 1 and xy.size in (0, 2):
        xy = xy.reshape(-1, 2)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise PromptError(f"points{_on(where)} must be (x, y) pairs of shape (N, 2), got shape {np.shape(points)}")
    _check_point_count(len(xy), where)
    checked_labels = _checked_labels(labels, len(xy), where, names)
    bad = ~np.isfinite(xy).all(axis=1)
    if bad.any():
        n = int(np.argmax(bad))
        raise PromptError(
            f"{_point_name(names, n)} {_pair(xy[n])}{_on(where)} has non-finite coordinates: points must be finite pixels"
        )
    if image_hw is not None:
        off = _off_image(xy, image_hw)
        if off.any():
            n = int(np.argmax(off))
            height, width = image_hw
            raise PromptError(
                f"{_point_name(names, n)} {_pair(xy[n])}{_on(where)} lies outside the {width}x{height} image "
                f"({_edge_rule(image_hw)})"
            )
    return xy, checked_labels


def validate_boxes(
    boxes, image_hw: tuple[int, int] | None = None, where: str = "", names: tuple[str, ...] = ()
) -> np.ndarray:
    """New ``(B, 4)`` boxes from ``[x0, y0, x1, y1]`` or ``(B, 4)``, under the box rule.

    Given ``image_hw = (H, W)`` each box is clipped to the image; ``None`` checks only what needs no
    image (shape, finiteness, degenerate). A box is named by ``names``, else ``box`` when one was
    given flat, else ``box <n>`` (1-based), on ``where``.
    """
    values = _as_float(boxes, "box", where)
    rows = values[None] if values.ndim == 1 else values
    if rows.ndim != 2 or rows.shape[1] != 4 or len(rows) == 0:
        raise PromptError(
            f"box{_on(where)} must be [x0, y0, x1, y1] or a (B, 4) array of them, got shape {np.shape(boxes)}"
        )
    default = ["box"] if values.ndim == 1 else [f"box {n + 1}" for n in range(len(rows))]
    named = [names[n] if n < len(names) else default[n] for n in range(len(rows))]
    return np.stack(
        [_checked_box(row, image_hw, f"{name} {_listed(row)}{_on(where)}") for row, name in zip(rows, named)]
    )


def _checked_box(box: np.ndarray, image_hw: tuple[int, int] | None, label: str) -> np.ndarray:
    """One box under the box rule: refused when non-finite or degenerate, clipped to the image."""
    if not np.isfinite(box).all():
        raise PromptError(f"{label} has non-finite coordinates: box edges must be finite pixels")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 - x0 >= MIN_BOX_SIDE and y1 - y0 >= MIN_BOX_SIDE):
        raise PromptError(
            f"{label} is degenerate: {x1 - x0:.2f} x {y1 - y0:.2f} pixels (needs x1 - x0 >= 1 and y1 - y0 >= 1)"
        )
    if image_hw is None:
        return box
    height, width = image_hw
    clipped = np.array([max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))])
    if not (clipped[2] - clipped[0] >= MIN_BOX_SIDE and clipped[3] - clipped[1] >= MIN_BOX_SIDE):
        raise PromptError(
            f"{label} does not intersect the {width}x{height} image (a box must overlap 0..{width} x 0..{height} "
            "by at least one pixel each way)"
        )
    return clipped


def _as_float(values, what: str, where: str) -> np.ndarray:
    """A float64 copy (never a view of the caller's array), or a PromptError for non-numbers."""
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"{what}{_on(where)} must be numbers: {exc}") from None


def _checked_labels(labels, count: int, where: str, names: tuple[str, ...]) -> np.ndarray:
    """One label per point, each 1 (positive) or 0 (negative), as a new int64 array."""
    if labels is None:
        return np.ones(count, np.int64)
    values = np.array(labels)
    if values.shape != (count,):
        raise PromptError(
            f"labels{_on(where)} of shape {values.shape} does not match the {count} points: give one label per point"
        )
    valid = np.isin(values, (0, 1))
    if not valid.all():
        n = int(np.argmin(valid))
        raise PromptError(
            f"{_point_name(names, n)}{_on(where)} has label {values.tolist()[n]!r}: point labels must be 1 (positive) or 0 (negative)"
        )
    return values.astype(np.int64)


def _check_point_count(count: int, where: str) -> None:
    """Refuse more than :data:`MAX_POINTS_PER_FRAME` points before the decoder allocates for them."""
    if count > MAX_POINTS_PER_FRAME:
        raise PromptError(
            f"{count} points{_on(where)}: at most {MAX_POINTS_PER_FRAME} points per frame are supported "
            "(the decoder's memory grows with every point)"
        )


def _off_image(xy: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Per ``(x, y)`` row: True when the edge rule puts it off the image (NaN included)."""
    height, width = image_hw
    x, y = xy[:, 0], xy[:, 1]
    return ~((-0.5 <= x) & (x < width - 0.5) & (-0.5 <= y) & (y < height - 0.5))


def _edge_rule(image_hw: tuple[int, int]) -> str:
    height, width = image_hw
    return f"a point is on it when -0.5 <= x < {width - 0.5} and -0.5 <= y < {height - 0.5}"


def _on(where: str) -> str:
    return f" on {where}" if where else ""


def _point_name(names: tuple[str, ...], n: int) -> str:
    return names[n] if n < len(names) else f"point {n + 1}"


def _pair(xy: np.ndarray) -> str:
    """``(x, y)`` with enough digits to tell ``29.5`` from ``29.5 + 1e-9``."""
    return f"({xy[0]:.12g}, {xy[1]:.12g})"


def _listed(box: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.12g}" for v in box) + "]"


# ---------------------------------------------------------------------------------- frame prompts
@dataclass
class FramePrompts:
    """The prompts of one frame, in that frame's pixels (see the module docstring).

    ``names`` name the points in order, then the box (e.g. the ROI it came from).
    """

    index: int
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    box: np.ndarray | None = None
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"frame {self.index}"
        self.points, self.labels = validate_points(self.points, self.labels, None, where, self.names)
        if self.box is not None:
            boxes = validate_boxes(self.box, None, where, self._box_names())
            if len(boxes) != 1:
                raise PromptError(f"{len(boxes)} boxes on {where}: a frame takes one box")
            self.box = boxes[0]

    def _point_names(self) -> tuple[str, ...]:
        return tuple(_point_name(self.names, n) for n in range(len(self.points)))

    def _box_names(self) -> tuple[str, ...]:
        """The box's name when ``names`` has one past the points, else none (the rule names it ``box``)."""
        return self.names[len(self.points) : len(self.points) + 1]

    @property
    def is_empty(self) -> bool:
        return len(self.points) == 0 and self.box is None

    @property
    def has_positive(self) -> bool:
        """True when something says where the object is (a positive point or a box)."""
        return self.box is not None or bool((self.labels == 1).any())

    def predict_kwargs(self) -> dict:
        """Keyword arguments for :meth:`Predictor.predict` (``None`` where a kind is absent)."""
        has_points = len(self.points) > 0
        return {
            "points": self.points if has_points else None,
            "labels": self.labels if has_points else None,
            "box": self.box,
        }

    def merged(self, other: "FramePrompts") -> "FramePrompts":
        """Points of both; ``other``'s box wins when both have one."""
        boxed = other if other.box is not None else self
        return FramePrompts(
            self.index,
            np.concatenate([self.points, other.points]),
            np.concatenate([self.labels, other.labels]),
            boxed.box,
            self._point_names() + other._point_names() + boxed._box_names(),
        )

    def mapped(self, source: Frame, target: Frame) -> "FramePrompts":
        """The same prompts in ``target``'s pixels (e.g. ``frame.square()``), exactly."""
        affine = source.pixels_to(target)
        points = self.points
        if len(points):
            xyd = np.concatenate([points, np.zeros((len(points), 1))], axis=1)
            points = (xyd @ affine[:3, :3].T + affine[:3, 3])[:, :2]
        box = None
        if self.box is not None:
            x0, y0, x1, y1 = self.box - 0.5  # edges in pixel-centre coordinates
            corners = np.array([[x0, y0, 0], [x1, y0, 0], [x0, y1, 0], [x1, y1, 0]], dtype=float)
            moved = corners @ affine[:3, :3].T + affine[:3, 3]
            box = np.concatenate([moved[:, :2].min(0), moved[:, :2].max(0)]) + 0.5
        return FramePrompts(target.index, points, self.labels.copy(), box, self.names)


def check_on_frame(prompts: FramePrompts, frame_shape: tuple[int, int], where: str = "") -> FramePrompts:
    """``prompts`` under the prompt rule on an ``(H, W)`` image: a new :class:`FramePrompts`, box clipped.

    ``prompts`` is left as it was, so callers must use the returned value. ``where`` names the frame
    in messages (default ``frame <index>``).
    """
    where = where.strip() or f"frame {prompts.index}"
    points, labels = validate_points(prompts.points, prompts.labels, frame_shape, where, prompts.names)
    box = None
    if prompts.box is not None:
        (box,) = validate_boxes(prompts.box, frame_shape, where, prompts._box_names())
    return replace(prompts, points=points, labels=labels, box=box)


def _slab_of(s: float) -> int:
    return int(np.floor(s + 0.5))


def points_to_frames(stack: FrameStack, points: tuple[MarkupPoint, ...]) -> dict[int, FramePrompts]:
    """Assign physical points to the frames whose slab holds them (errors for any point off).

    Points are grouped per frame first and each frame's prompts built once: linear in the points.
    """
    if not points:
        return {}
    xys = stack.physical_to_slice(np.stack([p.position for p in points]), "lps")
    slabs = np.floor(xys[:, 2] + 0.5)
    _check_points_on_stack(stack, points, xys, slabs)
    order = np.argsort(slabs, kind="stable")  # keeps the file order within a frame
    frames, starts, counts = np.unique(slabs[order], return_index=True, return_counts=True)
    for n, count in zip(frames, counts):
        _check_point_count(int(count), f"{stack.axis} slice {int(n)}")
    out: dict[int, FramePrompts] = {}
    for n, start, count in zip(frames, starts, counts):
        members = order[start : start + count]
        labels = [0 if points[m].negative else 1 for m in members]
        names = tuple(points[m].describe() for m in members)
        out[int(n)] = FramePrompts(int(n), xys[members, :2], labels, None, names)
    return out


def _check_points_on_stack(
    stack: FrameStack, points: tuple[MarkupPoint, ...], xys: np.ndarray, slabs: np.ndarray
) -> None:
    """Name the first point (in file order) outside every slab or off the image of its slice (the edge rule)."""
    height, width = stack.frame_shape
    last = len(stack) - 1
    x, y = xys[:, 0], xys[:, 1]
    off_stack = ~((slabs >= 0) & (slabs <= last))
    off_image = _off_image(xys[:, :2], stack.frame_shape)
    bad = off_stack | off_image
    if not bad.any():
        return
    m = int(np.argmax(bad))
    if off_stack[m]:
        raise PromptError(
            f"{points[m].describe()} lies at {stack.axis} slice {xys[m, 2]:.1f}, outside 0..{last} "
            f"(it needs a slice in {-0.5}..{last + 0.5})"
        )
    raise PromptError(
        f"{points[m].describe()} lies at pixel ({x[m]:.1f}, {y[m]:.1f}) of {stack.axis} slice {int(slabs[m])}, outside the "
        f"{width}x{height} image ({_edge_rule(stack.frame_shape)})"
    )


def _section_bounds(xys: np.ndarray, lo: float, hi: float) -> np.ndarray | None:
    """Bounding rectangle ``[xmin, ymin, xmax, ymax]`` of the box (corners ``xys``) within ``lo <= s <= hi``."""
    inside = [c[:2] for c in xys if lo - _EPS <= c[2] <= hi + _EPS]
    for a, b in _EDGES:
        sa, sb = xys[a, 2], xys[b, 2]
        if abs(sb - sa) < _EPS:
            continue
        for plane in (lo, hi):
            t = (plane - sa) / (sb - sa)
            if 0.0 < t < 1.0:
                inside.append(xys[a, :2] + t * (xys[b, :2] - xys[a, :2]))
    if not inside:
        return None
    pts = np.array(inside)
    return np.concatenate([pts.min(0), pts.max(0)])


def _crossed_slices(s_min: float, s_max: float, last: int, flat: bool) -> list[int]:
    """Slices ``0..last`` whose slab the span ``s_min..s_max`` crosses. The span is first cut to the
    stack, so an ROI reaching 1e300 slices away costs no more than one inside the volume."""
    if flat:
        n = _slab_of((s_min + s_max) / 2)
        return [n] if 0 <= n <= last else []
    first = max(0, _slab_of(max(s_min, -1.0)))
    stop = min(last, _slab_of(min(s_max, last + 1.0)))
    return [n for n in range(first, stop + 1) if max(s_min, n - 0.5) < min(s_max, n + 0.5)]


def roi_to_boxes(stack: FrameStack, roi: MarkupRoi) -> dict[int, np.ndarray]:
    """Boxes ``{frame index: [x0, y0, x1, y1]}`` of an ROI on every frame it crosses."""
    xys = stack.physical_to_slice(roi.corners("lps"), "lps")
    if not np.isfinite(xys).all():
        raise PromptError(f"{roi.describe()} has no finite position on the {stack.axis} slices")
    s_min, s_max = float(xys[:, 2].min()), float(xys[:, 2].max())
    last = len(stack) - 1
    flat = s_max - s_min <= 1.0 + SLICE_ROI_TOLERANCE
    slices = _crossed_slices(s_min, s_max, last, flat)
    if not slices:
        raise PromptError(
            f"{roi.describe()} lies at {stack.axis} slices {s_min:.1f}..{s_max:.1f}, outside 0..{last} "
            f"(it needs slices within {-0.5}..{last + 0.5})"
        )
    boxes: dict[int, np.ndarray] = {}
    reasons: list[str] = []
    for n in slices:
        lo, hi = (s_min, s_max) if flat else (max(s_min, n - 0.5), min(s_max, n + 0.5))
        bounds = _section_bounds(xys, lo, hi)
        if bounds is None:
            continue
        box = bounds + 0.5  # pixel-centre extent → COCO edge coordinates
        try:
            (boxes[n],) = validate_boxes(box, stack.frame_shape, f"{stack.axis} slice {n}", (roi.describe(),))
        except PromptError as exc:
            reasons.append(str(exc))
    if not boxes:
        detail = reasons[0] if reasons else f"{roi.describe()} has no section on {stack.axis} slices {slices}"
        raise PromptError(
            f"{detail}; no slice keeps a usable box (ROI spans {stack.axis} slices {slices[0]}..{slices[-1]})"
        )
    return boxes


def prompts_from_markups(stack: FrameStack, markups: Markups) -> dict[int, FramePrompts]:
    """All markups prompts as ``{frame index: FramePrompts}`` on the frames of ``stack``.

    Several ROIs on one frame are an error (one object per run: the model takes one box).
    """
    if not markups.points and not markups.rois:
        raise PromptError("no prompts: the markups contain no points and no ROI")
    out = points_to_frames(stack, markups.points)
    for roi in markups.rois:
        for n, box in roi_to_boxes(stack, roi).items():
            current = out.get(n, FramePrompts(n))
            if current.box is not None:
                raise PromptError(
                    f"{stack.axis} slice {n} has boxes from two ROIs ({current.names[-1]}, {roi.describe()}); give one ROI per object"
                )
            out[n] = FramePrompts(n, current.points, current.labels, box, current.names + (roi.describe(),))
    return dict(sorted(out.items()))


def pixel_prompts(
    frame_shape: tuple[int, int],
    points: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    box: np.ndarray | None = None,
    index: int = 0,
) -> FramePrompts:
    """Prompts given directly in pixels (CLI ``--point x,y``; no labels: all positive), validated against the frame."""
    prompts = FramePrompts(index, np.zeros((0, 2)) if points is None else points, labels, box)
    if prompts.is_empty:
        raise PromptError("no prompts given: pass at least one point or a box")
    return check_on_frame(prompts, frame_shape)
