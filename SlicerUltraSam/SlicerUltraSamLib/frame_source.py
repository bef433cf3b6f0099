"""The 2D frames the model sees: slices of a volume node along an axis, or the items of a cine.

A source behaves like the library's :class:`ultrasam.frames.FrameStack` (``len``, ``source[n]`` →
:class:`ultrasam.frames.Frame` with its exact geometry, ``frame_shape``, ``axis``), so
``ultrasam.pipeline.segment`` — the code the command line runs — segments it unchanged: same
sagittal convention, same square-pixel resampling, same propagation.

* **Cache identity.** Each source has a ``key``; frame ``n`` is encoded under ``(key, n)``, so an
  embedding computed in the background, for a previous click, or during propagation is reused by
  all. The key includes the voxels' modification time and the geometry, so editing either
  invalidates it.
* **Intensities.** 8-bit images (gray or RGB) go to the model unchanged. Anything else is windowed
  to 8 bits once for the whole stack — with the volume's display window when it has one (what the
  user sees is what the model gets), otherwise the 0.5–99.5 percentiles of the whole volume — so
  neighbouring slices are not each stretched differently.
"""

from __future__ import annotations

from typing import Hashable

import numpy as np
from slicer import util

from ultrasam.errors import ImageError
from ultrasam.frames import Frame, FrameStack, check_axis

from .geometry import ijk_to_ras_matrix
from .nodes import volume_from_node

__all__ = ["FrameSource", "VolumeFrames", "SequenceFrames", "display_window", "DEFAULT_PERCENTILES"]

# The library's default robust window (``ultrasam.transforms`` imports torch and OpenCV, so it is
# imported only when an image is actually windowed; a test checks the two stay equal).
DEFAULT_PERCENTILES = (0.5, 99.5)


def display_window(volume_node, voxels: np.ndarray) -> tuple[float, float] | None:
    """The 8-bit window for ``voxels``: None for uint8, else the display window or robust percentiles."""
    if voxels.dtype == np.uint8:
        return None
    display = volume_node.GetDisplayNode() if volume_node is not None else None
    if display is not None and hasattr(display, "GetWindowLevelMin"):
        low, high = float(display.GetWindowLevelMin()), float(display.GetWindowLevelMax())
        if high > low:
            return low, high
    low, high = (float(v) for v in np.percentile(voxels, DEFAULT_PERCENTILES))
    return (low, high) if high > low else (low, low + 1.0)


def _geometry_key(volume_node) -> tuple:
    return tuple(np.round(ijk_to_ras_matrix(volume_node)[:3].ravel(), 9).tolist())


class FrameSource:
    """A FrameStack-like sequence of same-sized frames with a cache identity (module docstring)."""

    key: Hashable
    axis: str
    num_frames: int
    frame_shape: tuple[int, int]
    window: tuple[float, float] | None

    def voxel_frame(self, index: int) -> Frame:
        """Frame ``index`` with the stored voxel values."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, index: int) -> Frame:
        """Frame ``index`` as the model gets it (8-bit, windowed if needed), on the voxel grid."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"{self.axis} frame {index} is outside 0..{self.num_frames - 1}")
        frame = self.voxel_frame(index)
        if self.window is None:
            return frame
        from ultrasam.transforms import to_rgb_uint8

        return Frame(
            to_rgb_uint8(frame.image, self.window),
            frame.pixel_to_ijk_matrix,
            frame.ijk_to_lps_matrix,
            index=frame.index,
            axis=frame.axis,
        )

    def model_image(self, index: int) -> np.ndarray:
        """The pixels ``ultrasam.pipeline.segment`` encodes for frame ``index`` (square pixels)."""
        frame = self[index]
        return (frame if frame.is_square else frame.square()).image

    def frame_key(self, index: int) -> Hashable:
        return (self.key, index)


class VolumeFrames(FrameSource):
    """Slices of a scalar or vector volume node along ``axis`` (a 2D frame: its one axial slice).

    ``snapshot=True`` copies the voxels now, so a worker thread can read them while the scene
    changes; otherwise frames are views into the node's array.
    """

    def __init__(self, volume_node, axis: str, snapshot: bool = False) -> None:
        voxels = util.arrayFromVolume(volume_node) if volume_node.GetImageData() is not None else None
        if voxels is None or voxels.ndim not in (3, 4) or voxels.size == 0:
            raise ImageError(f"volume {volume_node.GetName()!r} has no usable voxels")
        self.volume = volume_from_node(volume_node, np.array(voxels) if snapshot else voxels)
        self.stack = FrameStack(self.volume, check_axis(axis))
        self.axis = self.stack.axis
        self.num_frames = len(self.stack)
        self.frame_shape = self.stack.frame_shape
        self.window = display_window(volume_node, self.volume.array)
        mtime = int(volume_node.GetImageData().GetMTime())
        self.key = (volume_node.GetID(), mtime, _geometry_key(volume_node), self.axis, self.window)

    def voxel_frame(self, index: int) -> Frame:
        return self.stack[index]


class SequenceFrames(FrameSource):
    """The frames of a cine loop: the items of a browser's master volume sequence.

    Every item must be a single-slice volume of the proxy's size (a 2D image over time); all take
    the proxy's geometry. ``snapshot=True`` copies every frame now (for a worker thread).
    """

    def __init__(self, sequence_node, proxy_node, snapshot: bool = False) -> None:
        self.sequence = sequence_node
        self.proxy = proxy_node
        self.axis = "axial"
        self.num_frames = int(sequence_node.GetNumberOfDataNodes())
        if self.num_frames == 0:
            raise ImageError(f"sequence {sequence_node.GetName()!r} has no frames")
        proxy_voxels = util.arrayFromVolume(proxy_node)
        self._shape = proxy_voxels.shape
        self.frame_shape = tuple(int(v) for v in proxy_voxels.shape[1:3])
        self.window = display_window(proxy_node, proxy_voxels)
        self.key = (sequence_node.GetID(), int(sequence_node.GetMTime()), _geometry_key(proxy_node), self.window)
        self._copies = [np.array(self._item_voxels(n)) for n in range(self.num_frames)] if snapshot else None

    def _item_voxels(self, index: int) -> np.ndarray:
        node = self.sequence.GetNthDataNode(index)
        if node is None or not node.IsA("vtkMRMLVolumeNode") or node.GetImageData() is None:
            raise ImageError(f"item {index} of sequence {self.sequence.GetName()!r} is not an image volume")
        voxels = util.arrayFromVolume(node)
        if voxels.shape != self._shape:
            raise ImageError(
                f"item {index} of sequence {self.sequence.GetName()!r} has voxel array shape {voxels.shape}, "
                f"the frame on screen {self._shape}: cine frames must be 2D images of one size"
            )
        return voxels

    def voxel_frame(self, index: int) -> Frame:
        voxels = self._copies[index] if self._copies is not None else self._item_voxels(index)
        frame = FrameStack(volume_from_node(self.proxy, voxels), "axial")[0]
        return Frame(frame.image, frame.pixel_to_ijk_matrix, frame.ijk_to_lps_matrix, index=index, axis="axial")
