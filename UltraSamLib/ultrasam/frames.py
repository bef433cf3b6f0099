"""2D frames cut from volumes, each carrying its exact mapping to voxel index and physical space.

Pixel convention: a frame pixel ``(x, y)`` is column ``x``, row ``y``; integer coordinates are
pixel *centres* (as ITK voxel indices are), so pixel ``(c, r)`` covers ``[c - 0.5, c + 0.5]``.
Frame coordinates have a third, out-of-plane component ``d`` (0 on the frame, in slice steps),
which makes every mapping a full invertible 3D affine: a physical point off the frame comes back
as ``(x, y, d)`` and says how far from the frame it lies.

Slicing convention (the one of the original UltraSam/US-43d tooling, ``extract_slices``): the
volume array is numpy/SimpleITK ``array[k, j, i]`` = ``(z, y, x)``.

=========== ======================= ========================== ================= ===============
axis        frame n is              numpy                      frame rows (y)    frame cols (x)
=========== ======================= ========================== ================= ===============
axial       constant k = n          ``array[n]``               j (y)             i (x)
coronal     constant j = n          ``array[:, n]``            k (z)             i (x)
sagittal    constant i = n          ``array[:, :, n]``         k (z)             j (y)
=========== ======================= ========================== ================= ===============

Sagittal is ``array.transpose(2, 0, 1)[n]``: slices over the *first voxel index* i (x), exactly as
US-43d built its sagittal frames; row 0 is k = 0, so with the usual superior-increasing z the
frame is shown upside down compared with Slicer's sagittal view. A 2D+t cine stored as a volume
is read ``axial``: each frame is one time point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ultrasam.errors import ImageError
from ultrasam.volume import LPS_TO_RAS, Volume, apply_affine, check_space

AXES = ("axial", "coronal", "sagittal")

# Columns: where frame x, frame y and slice number s go in (i, j, k).
_PERMUTATIONS = {
    "axial": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),  # x→i, y→j, s→k
    "coronal": ((1, 0, 0), (0, 0, 1), (0, 1, 0)),  # x→i, y→k, s→j
    "sagittal": ((0, 0, 1), (1, 0, 0), (0, 1, 0)),  # x→j, y→k, s→i
}
_SLICE_AXIS_OF_IJK = {"axial": 2, "coronal": 1, "sagittal": 0}


def check_axis(axis: str) -> str:
    """Normalise a slicing-axis name."""
    name = str(axis).lower()
    if name not in AXES:
        raise ValueError(f"slicing axis must be one of {AXES}, got {axis!r}")
    return name


def slice_axis_of(axis: str) -> int:
    """0, 1 or 2: which voxel index (i, j or k) is constant on the frames along ``axis``."""
    return _SLICE_AXIS_OF_IJK[check_axis(axis)]


def axis_holding(ijk_axis: int) -> str:
    """The slicing axis whose frames hold voxel index ``ijk_axis`` (0 = i, 1 = j, 2 = k) constant."""
    for axis, held in _SLICE_AXIS_OF_IJK.items():
        if held == ijk_axis:
            return axis
    raise ValueError(f"voxel index axis must be 0 (i), 1 (j) or 2 (k), got {ijk_axis!r}")


def frame_shape_of(shape_ijk: Sequence[int], axis: str) -> tuple[int, int]:
    """``(H, W)`` of the frames along ``axis`` of a volume of ``(ni, nj, nk)`` voxels (rows, columns per the table)."""
    ni, nj, nk = (int(n) for n in shape_ijk[:3])
    return {"axial": (nj, ni), "coronal": (nk, ni), "sagittal": (nk, nj)}[check_axis(axis)]


def frame_of(array: np.ndarray, axis: str, n: int) -> np.ndarray:
    """Frame ``n`` along ``axis`` of a ``[k, j, i(, c)]`` array: a view, so writing into it writes the volume."""
    array_axis = 2 - slice_axis_of(axis)  # numpy order is (k, j, i)
    return array[(slice(None),) * array_axis + (n,)]


def slice_to_ijk_matrix(axis: str) -> np.ndarray:
    """4x4 affine: ``(x, y, s)`` (frame column, frame row, slice number) → ``(i, j, k)``."""
    matrix = np.eye(4)
    matrix[:3, :3] = np.array(_PERMUTATIONS[check_axis(axis)], dtype=float)
    return matrix


def _as_points(points: np.ndarray, width: int) -> np.ndarray:
    pts = np.atleast_2d(np.asarray(points, dtype=float))
    if pts.shape[-1] == width - 1:  # (x, y) → (x, y, 0): on the frame
        pts = np.concatenate([pts, np.zeros((len(pts), 1))], axis=1)
    if pts.shape[-1] != width:
        raise ValueError(f"expected points of 2 or 3 coordinates, got shape {np.shape(points)}")
    return pts


@dataclass(frozen=True, eq=False)
class Frame:
    """A 2D image ``(H, W)`` or ``(H, W, C)`` and its exact geometry.

    ``pixel_to_ijk_matrix`` maps ``(x, y, d)`` to the volume's continuous ``(i, j, k)``;
    ``ijk_to_lps_matrix`` is the volume's index → LPS affine. ``parent`` is set on a resampled
    frame (see :meth:`square`) and names the frame whose grid the user's data lives on.
    """

    image: np.ndarray
    pixel_to_ijk_matrix: np.ndarray
    ijk_to_lps_matrix: np.ndarray
    index: int = 0
    axis: str = "axial"
    parent: "Frame | None" = None
    source: Path | None = None

    # ---- shape and spacing ------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``: rows, columns."""
        return int(self.image.shape[0]), int(self.image.shape[1])

    def pixel_to_physical_matrix(self, space: str = "lps") -> np.ndarray:
        """4x4 affine ``(x, y, d)`` → physical ``space``."""
        to_lps = self.ijk_to_lps_matrix @ self.pixel_to_ijk_matrix
        return LPS_TO_RAS @ to_lps if check_space(space) == "ras" else to_lps

    @property
    def pixel_spacing(self) -> tuple[float, float]:
        """Millimetres per pixel along x (columns) and y (rows)."""
        linear = self.pixel_to_physical_matrix()[:3, :3]
        return float(np.linalg.norm(linear[:, 0])), float(np.linalg.norm(linear[:, 1]))

    @property
    def slice_spacing(self) -> float:
        """Millimetres per unit of ``d`` (distance between neighbouring frames)."""
        return float(np.linalg.norm(self.pixel_to_physical_matrix()[:3, 2]))

    @property
    def is_square(self) -> bool:
        """True when pixels are square to 1e-6 relative."""
        sx, sy = self.pixel_spacing
        return abs(sx - sy) <= 1e-6 * max(sx, sy)

    # ---- coordinate mappings ----------------------------------------------------------------
    def pixel_to_ijk(self, pixels: np.ndarray) -> np.ndarray:
        """``(N, 2)`` ``(x, y)`` or ``(N, 3)`` ``(x, y, d)`` → ``(N, 3)`` continuous ``(i, j, k)``."""
        return apply_affine(self.pixel_to_ijk_matrix, _as_points(pixels, 3))

    def ijk_to_pixel(self, ijk: np.ndarray) -> np.ndarray:
        """``(N, 3)`` continuous ``(i, j, k)`` → ``(N, 3)`` ``(x, y, d)``; ``d`` = distance off the frame."""
        return apply_affine(np.linalg.inv(self.pixel_to_ijk_matrix), _as_points(ijk, 3))

    def pixel_to_physical(self, pixels: np.ndarray, space: str = "lps") -> np.ndarray:
        """``(N, 2|3)`` frame coordinates → ``(N, 3)`` physical points in ``space``."""
        return apply_affine(self.pixel_to_physical_matrix(space), _as_points(pixels, 3))

    def physical_to_pixel(self, points: np.ndarray, space: str = "lps") -> np.ndarray:
        """``(N, 3)`` physical points → ``(N, 3)`` ``(x, y, d)`` (continuous, not rounded)."""
        return apply_affine(np.linalg.inv(self.pixel_to_physical_matrix(space)), _as_points(points, 3))

    def contains(self, pixels: np.ndarray) -> np.ndarray:
        """Which ``(x, y)`` lie on the image: within the pixel extents ``[-0.5, W - 0.5]``."""
        pts = _as_points(pixels, 3)
        height, width = self.shape
        return (pts[:, 0] >= -0.5) & (pts[:, 0] <= width - 0.5) & (pts[:, 1] >= -0.5) & (pts[:, 1] <= height - 0.5)

    def pixels_to(self, target: "Frame") -> np.ndarray:
        """4x4 affine from this frame's ``(x, y, d)`` to ``target``'s, for frames of one volume."""
        if not np.allclose(self.ijk_to_lps_matrix, target.ijk_to_lps_matrix, atol=1e-9):
            raise ValueError("frames belong to volumes with different geometry")
        return np.linalg.inv(target.pixel_to_ijk_matrix) @ self.pixel_to_ijk_matrix

    def map_pixels(self, pixels: np.ndarray, target: "Frame") -> np.ndarray:
        """This frame's ``(x, y[, d])`` → ``target``'s ``(x, y, d)``."""
        return apply_affine(self.pixels_to(target), _as_points(pixels, 3))

    # ---- square pixels ----------------------------------------------------------------------
    def square(self, max_side: int | None = 4096) -> "Frame":
        """This frame resampled to square pixels (the model assumes them); ``self`` if already square.

        The finer spacing is kept (the coarse axis is upsampled, nothing is lost) unless the result
        would exceed ``max_side`` pixels. The new frame's geometry is exact: the image extent is
        preserved (pixel edges ``-0.5`` and ``W - 0.5`` map onto each other), so its spacing along
        an axis is ``old_spacing * W / W_new``; ``parent`` is this frame, and
        :meth:`mask_to_parent` brings a mask back onto this grid.
        """
        if self.is_square:
            return self
        import cv2

        height, width = self.shape
        sx, sy = self.pixel_spacing
        target = min(sx, sy)
        new_w, new_h = max(1, round(width * sx / target)), max(1, round(height * sy / target))
        if max_side is not None and max(new_w, new_h) > max_side:
            factor = max_side / max(new_w, new_h)
            new_w, new_h = max(1, round(new_w * factor)), max(1, round(new_h * factor))
        scale_x, scale_y = width / new_w, height / new_h  # parent pixels per new pixel
        new_to_parent = np.array(
            [
                [scale_x, 0.0, 0.0, 0.5 * scale_x - 0.5],
                [0.0, scale_y, 0.0, 0.5 * scale_y - 0.5],
                [0.0, 0.0, 1.0, 0.0],
                [0.0, 0.0, 0.0, 1.0],
            ]
        )
        image = np.asarray(self.image)
        supported = image.dtype in (np.uint8, np.uint16, np.int16, np.float32, np.float64)
        work = np.ascontiguousarray(image if supported else image.astype(np.float64))  # frames are often strided views
        shrinking = new_w < width or new_h < height
        # OpenCV's linear resize uses the same half-pixel-centre mapping as ``new_to_parent``.
        resized = cv2.resize(work, (new_w, new_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        if image.ndim == 3 and resized.ndim == 2:
            resized = resized[..., None]
        return Frame(
            image=resized,
            pixel_to_ijk_matrix=self.pixel_to_ijk_matrix @ new_to_parent,
            ijk_to_lps_matrix=self.ijk_to_lps_matrix,
            index=self.index,
            axis=self.axis,
            parent=self,
            source=self.source,
        )

    def resample_onto(self, values: np.ndarray, target: "Frame", order: int = 1) -> np.ndarray:
        """Resample ``values`` (on this frame's grid) onto ``target``'s grid, same plane only.

        ``order`` 0 = nearest neighbour, 1 = bilinear; outside this frame the edge value is used.
        """
        from scipy import ndimage

        target_to_self = target.pixels_to(self)
        if not np.allclose(target_to_self[2], [0.0, 0.0, 1.0, 0.0], atol=1e-9):
            raise ValueError("frames do not lie in the same plane; resampling between them is not 2D")
        values = np.asarray(values)
        if values.shape[:2] != self.shape:
            raise ImageError(f"array shape {values.shape[:2]} does not match the frame {self.shape}")
        # ndimage works in (row, col) = (y, x): reorder the in-plane part of the affine.
        swap = np.array([[0, 1], [1, 0]])
        matrix = swap @ target_to_self[:2, :2] @ swap
        offset = swap @ target_to_self[:2, 3]
        work = values.astype(np.float32) if values.dtype == bool else values
        out = ndimage.affine_transform(
            work, matrix, offset=offset, output_shape=target.shape, order=order, mode="nearest", prefilter=False
        )
        return out

    def mask_to_parent(self, mask: np.ndarray, method: str = "linear") -> np.ndarray:
        """A bool mask on this (resampled) frame → bool mask on the parent's original grid.

        ``linear``: bilinear interpolation of the 0/1 mask, kept where ≥ 0.5 (smooth edges);
        ``nearest``: the value of the nearest resampled pixel.
        """
        if self.parent is None:
            return np.asarray(mask, dtype=bool)
        if method not in ("linear", "nearest"):
            raise ValueError(f"method must be 'linear' or 'nearest', got {method!r}")
        values = np.asarray(mask, dtype=np.float32)
        resampled = self.resample_onto(values, self.parent, order=1 if method == "linear" else 0)
        return resampled >= 0.5


class FrameStack(Sequence):
    """The frames of a volume along one axis (a lazy sequence of numpy views, no copies).

    All frames share the in-plane mapping; frame ``n`` is the plane ``s = n`` of the stack's
    ``(x, y, s)`` coordinates (see :meth:`physical_to_slice`).
    """

    def __init__(self, volume: Volume, axis: str = "axial") -> None:
        self.volume = volume
        self.axis = check_axis(axis)
        self.slice_to_ijk = slice_to_ijk_matrix(self.axis)
        self._slice_axis = _SLICE_AXIS_OF_IJK[self.axis]

    def __len__(self) -> int:
        return int(self.volume.shape_ijk[self._slice_axis])

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(H, W)`` shared by every frame."""
        return frame_shape_of(self.volume.shape_ijk, self.axis)

    def image(self, n: int) -> np.ndarray:
        """Frame ``n``'s pixels: a view into the volume array."""
        return frame_of(self.volume.array, self.axis, n)

    def __getitem__(self, n):
        if isinstance(n, slice):
            return [self[i] for i in range(*n.indices(len(self)))]
        n = int(n)
        if n < 0:
            n += len(self)
        if not 0 <= n < len(self):
            raise IndexError(f"{self.axis} frame {n} outside 0..{len(self) - 1}")
        shift = np.eye(4)
        shift[2, 3] = n
        return Frame(
            image=self.image(n),
            pixel_to_ijk_matrix=self.slice_to_ijk @ shift,
            ijk_to_lps_matrix=self.volume.ijk_to_lps(),
            index=n,
            axis=self.axis,
            source=self.volume.source,
        )

    def slice_to_physical_matrix(self, space: str = "lps") -> np.ndarray:
        """4x4 affine: ``(x, y, s)`` → physical ``space``."""
        return self.volume.ijk_to_physical(space) @ self.slice_to_ijk

    def physical_to_slice(self, points: np.ndarray, space: str = "lps") -> np.ndarray:
        """Physical points → ``(x, y, s)``: frame pixel and continuous slice number."""
        return apply_affine(np.linalg.inv(self.slice_to_physical_matrix(space)), _as_points(points, 3))

    def slice_to_physical(self, xys: np.ndarray, space: str = "lps") -> np.ndarray:
        """``(x, y, s)`` → physical points in ``space``."""
        return apply_affine(self.slice_to_physical_matrix(space), _as_points(xys, 3))

    def to_volume_array(
        self, masks: Mapping[int, np.ndarray] | Sequence[np.ndarray | None], dtype=np.uint8
    ) -> np.ndarray:
        """Put per-frame 2D arrays back into a ``[k, j, i]`` volume array (missing frames stay 0)."""
        out = np.zeros(self.volume.array.shape[:3], dtype=dtype)
        items = masks.items() if isinstance(masks, Mapping) else enumerate(masks)
        for n, mask in items:
            if mask is None:
                continue
            mask = np.asarray(mask)
            if mask.shape != self.frame_shape:
                raise ImageError(f"{self.axis} mask {n} has shape {mask.shape}, frames are {self.frame_shape}")
            frame_of(out, self.axis, n)[...] = mask
        return out


def frames_along(volume: Volume, axis: str = "axial") -> FrameStack:
    """The frames of ``volume`` along ``axis`` (see the module docstring for the convention)."""
    return FrameStack(volume, axis)
