"""Prompts per frame, and the one place where physical prompts (markups) become frame pixels.

Pixel conventions (those of :class:`ultrasam.predictor.Predictor`):

* a point is ``(x, y)`` = (column, row) with integer values at pixel *centres*; it lies on the
  image when ``-0.5 <= x <= W - 0.5`` and ``-0.5 <= y <= H - 0.5``;
* a box is ``[x0, y0, x1, y1]`` in **pixel-edge** coordinates, COCO's ``[x, y, x + w, y + h]``:
  pixel ``c`` spans ``[c, c + 1)``, so the box of a mask covering columns ``a..b`` is
  ``x0 = a, x1 = b + 1`` (exclusive max corner). A physical box maps to
  ``x0 = x_min + 0.5, x1 = x_max + 0.5`` where ``x_min``/``x_max`` are pixel-centre coordinates
  of its extent: nothing is rounded, the model gets the exact sub-pixel box.

Slice assignment: frame ``n`` of a stack owns the slab ``n - 0.5 <= s < n + 0.5`` of the
continuous slice coordinate ``s`` (half a voxel either side of its centre plane).

* A point goes to the frame whose slab holds it. A point outside every slab, or off the image,
  is an error naming the point and where it lies; points are never dropped silently.
* An ROI is cut by each slab it crosses: the box on frame ``n`` is the bounding rectangle of
  the part of the (possibly oblique) ROI inside the slab, computed exactly from its 8 corners
  and the crossings of its 12 edges with the slab planes. For an ROI aligned with the slicing
  axis this is the projection of its 8 corners on every slice it spans. A flat ROI (zero
  thickness, as drawn on a 2D image) belongs to the one slab holding it. Slices where the cut
  is less than one pixel wide or misses the image are skipped; if none remains the ROI is an
  error (empty intersection, or degenerate box). Only the slices of the stack are visited, however
  far the ROI reaches beyond them.

Limits (every path to the model goes through them: :class:`FramePrompts`, and
:meth:`ultrasam.predictor.Predictor.predict` via :func:`check_point_values` / :func:`check_box_values`):

* :data:`MAX_POINTS_PER_FRAME` clicks per frame: the decoder attends over every point token, so
  its memory grows with the point count (10 000 points asked for 3.2 GB);
* coordinates must be finite: ``inf`` or ``NaN`` names no pixel, and clipping an infinite box to
  the image would silently turn it into "the whole image".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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

_EPS = 1e-9
# The 12 edges of a box whose corner n has bit a set when it is on the + side of axis a.
_EDGES = [(n, n | (1 << a)) for n in range(8) for a in range(3) if not n & (1 << a)]


def check_point_count(count: int, where: str) -> None:
    """Refuse more than :data:`MAX_POINTS_PER_FRAME` points before anything allocates for them."""
    if count > MAX_POINTS_PER_FRAME:
        raise PromptError(
            f"{count} points on {where}: at most {MAX_POINTS_PER_FRAME} points per frame are supported "
            "(the decoder's memory grows with every point)"
        )


def check_point_values(points: np.ndarray, names: tuple[str, ...] = (), where: str = "") -> None:
    """Refuse non-finite ``(N, 2)`` points, naming the first one; ``points`` is only read."""
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        n = int(np.argmax(bad))
        name = names[n] if n < len(names) else f"point {n + 1}"
        x, y = points[n]
        raise PromptError(f"{name}{where} ({x:g}, {y:g}) has non-finite coordinates: points must be finite pixels")


def check_box_values(box: np.ndarray, name: str = "box") -> None:
    """Refuse a box with a non-finite edge (an infinite box would otherwise clip to the image)."""
    if not np.isfinite(box).all():
        raise PromptError(f"{name} {np.round(box, 2).tolist()} has non-finite coordinates: box edges must be finite pixels")


@dataclass
class FramePrompts:
    """The prompts of one frame, in that frame's pixels (see the module docstring)."""

    index: int
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    box: np.ndarray | None = None
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=float).reshape(-1, 2)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(self.points) != len(self.labels):
            raise PromptError(f"{len(self.points)} points but {len(self.labels)} labels on frame {self.index}")
        if not np.isin(self.labels, (0, 1)).all():
            raise PromptError(f"point labels must be 1 (positive) or 0 (negative), got {self.labels.tolist()}")
        check_point_count(len(self.points), f"frame {self.index}")
        check_point_values(self.points, self.names)
        if self.box is not None:
            self.box = np.asarray(self.box, dtype=float).reshape(4)
            check_box_values(self.box)

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
        return FramePrompts(
            self.index,
            np.concatenate([self.points, other.points]),
            np.concatenate([self.labels, other.labels]),
            other.box if other.box is not None else self.box,
            self.names + other.names,
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
    """Validate pixel prompts against an image of ``(H, W)``: points on it, box non-degenerate.

    The box is clipped to the image; a box entirely off the image is an error. The clipped box is a
    new array bound to ``prompts.box`` (callers use the returned prompts); arrays the caller passed
    in are never written to.
    """
    height, width = frame_shape
    where = f" on {where.strip()}" if where.strip() else ""
    check_point_values(prompts.points, prompts.names, where)
    if prompts.box is not None:
        check_box_values(prompts.box, f"box{where}")
    for n, (x, y) in enumerate(prompts.points):
        if not (-0.5 <= x <= width - 0.5 and -0.5 <= y <= height - 0.5):
            name = prompts.names[n] if n < len(prompts.names) else f"point {n + 1}"
            raise PromptError(
                f"{name}{where} at pixel ({x:.1f}, {y:.1f}) lies outside the {width}x{height} image "
                f"(x must be in -0.5..{width - 0.5}, y in -0.5..{height - 0.5})"
            )
    if prompts.box is not None:
        prompts.box = _clip_box(prompts.box, frame_shape, f"box {np.round(prompts.box, 2).tolist()}{where}")
    return prompts


def _clip_box(box: np.ndarray, frame_shape: tuple[int, int], name: str) -> np.ndarray:
    height, width = frame_shape
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 - x0 >= MIN_BOX_SIDE and y1 - y0 >= MIN_BOX_SIDE):
        raise PromptError(f"{name} is degenerate: {x1 - x0:.2f} x {y1 - y0:.2f} pixels (needs x1 > x0, y1 > y0, at least 1 pixel)")
    clipped = np.array([max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))])
    if clipped[2] - clipped[0] < MIN_BOX_SIDE or clipped[3] - clipped[1] < MIN_BOX_SIDE:
        raise PromptError(f"{name} does not intersect the {width}x{height} image (box edges must overlap 0..{width} x 0..{height})")
    return clipped


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
        check_point_count(int(count), f"{stack.axis} slice {int(n)}")
    out: dict[int, FramePrompts] = {}
    for n, start, count in zip(frames, starts, counts):
        members = order[start:start + count]
        labels = [0 if points[m].negative else 1 for m in members]
        names = tuple(points[m].describe() for m in members)
        out[int(n)] = FramePrompts(int(n), xys[members, :2], labels, None, names)
    return out


def _check_points_on_stack(stack: FrameStack, points: tuple[MarkupPoint, ...], xys: np.ndarray, slabs: np.ndarray) -> None:
    """Name the first point (in file order) outside every slab or off the image of its slice."""
    height, width = stack.frame_shape
    last = len(stack) - 1
    x, y = xys[:, 0], xys[:, 1]
    off_stack = ~((slabs >= 0) & (slabs <= last))
    off_image = ~((-0.5 <= x) & (x <= width - 0.5) & (-0.5 <= y) & (y <= height - 0.5))
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
        f"{width}x{height} image (x in -0.5..{width - 0.5}, y in -0.5..{height - 0.5})"
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
        n = _slab_of(s_min)
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
    flat = s_max - s_min < 1e-6
    slices = _crossed_slices(s_min, s_max, last, flat)
    if not slices:
        raise PromptError(
            f"{roi.describe()} lies at {stack.axis} slices {s_min:.1f}..{s_max:.1f}, outside 0..{last} "
            f"(it needs slices within {-0.5}..{last + 0.5})"
        )
    height, width = stack.frame_shape
    boxes: dict[int, np.ndarray] = {}
    reasons: list[str] = []
    for n in slices:
        lo, hi = (s_min, s_max) if flat else (max(s_min, n - 0.5), min(s_max, n + 0.5))
        bounds = _section_bounds(xys, lo, hi)
        if bounds is None:
            continue
        box = bounds + 0.5  # pixel-centre extent → COCO edge coordinates
        try:
            boxes[n] = _clip_box(box, (height, width), f"{roi.describe()} on {stack.axis} slice {n}")
        except PromptError as exc:
            reasons.append(str(exc))
    if not boxes:
        detail = reasons[0] if reasons else f"{roi.describe()} has no section on {stack.axis} slices {slices}"
        raise PromptError(f"{detail}; no slice keeps a usable box (ROI spans {stack.axis} slices {slices[0]}..{slices[-1]})")
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
                raise PromptError(f"{stack.axis} slice {n} has boxes from two ROIs ({current.names[-1]}, {roi.describe()}); give one ROI per object")
            out[n] = FramePrompts(n, current.points, current.labels, box, current.names + (roi.describe(),))
    return dict(sorted(out.items()))


def pixel_prompts(
    frame_shape: tuple[int, int],
    points: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    box: np.ndarray | None = None,
    index: int = 0,
) -> FramePrompts:
    """Prompts given directly in pixels (CLI ``--point x,y``), validated against the frame."""
    pts = np.zeros((0, 2)) if points is None else np.asarray(points, dtype=float).reshape(-1, 2)
    lab = np.ones(len(pts), np.int64) if labels is None else np.asarray(labels)
    prompts = FramePrompts(index, pts, lab, box, tuple(f"point {n + 1}" for n in range(len(pts))))
    if prompts.is_empty:
        raise PromptError("no prompts given: pass at least one point or a box")
    return check_on_frame(prompts, frame_shape)


def prompt_frames(prompts: Mapping[int, FramePrompts]) -> list[int]:
    """Frame indices carrying a positive prompt (where propagation can start)."""
    return [n for n, p in sorted(prompts.items()) if p.has_positive]
