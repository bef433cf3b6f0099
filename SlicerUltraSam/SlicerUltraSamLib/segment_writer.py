"""Write one slice of one segment, leaving every other slice and every other segment untouched.

A segmentation stores segments as binary labelmaps, often several segments sharing one layer with
different label values. Replacing a whole segment (``updateSegmentBinaryLabelmapFromArray``)
costs a full-volume copy per click; ``SetBinaryLabelmapToSegment(..., MODE_REPLACE, extent)``
clears the rest of the segment. What works (same principle as Segment Editor's "Set"): two
merges restricted to the slice's extent — ``MODE_MERGE_MIN`` with zeros (erases the segment on
that slice only), then ``MODE_MERGE_MAX`` with the new mask (adds it) — on a layer that holds
only the target segment: a segment sharing its layer is first moved to its own layer (the merges
act on the whole layer; see :meth:`SegmentWriter._own_layer`).

Writes are exact only on the volume's own voxel grid, so the writer insists on it: the
segmentation must use the volume's geometry (spacing, origin, axes) and sit under the same parent
transform. A new or empty segmentation is given the volume's geometry; anything else is an error
that says what to do, never a silent resampling.
"""

from __future__ import annotations

import colorsys

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from ultrasam.errors import UltraSamError

from .geometry import ijk_to_ras_matrix, matrix_to_numpy, numpy_to_matrix, slice_axis_index

__all__ = [
    "SegmentWriter",
    "BINARY_LABELMAP",
    "segment_color",
    "next_segment_name",
    "add_segment",
    "create_segmentation_node",
]

BINARY_LABELMAP = "Binary labelmap"
SEGMENT_NAME_PREFIX = "UltraSam"
_GEOMETRY_TOLERANCE = 1e-5
_Logic = slicer.vtkSlicerSegmentationsModuleLogic


def segment_color(number: int) -> tuple[float, float, float]:
    """A distinct, saturated colour for segment ``number`` (1, 2, ...): golden-angle hue steps."""
    hue = (0.07 + 0.618033988749895 * (number - 1)) % 1.0
    return colorsys.hsv_to_rgb(hue, 0.75, 0.95)


def next_segment_name(segmentation_node) -> tuple[str, int]:
    """The first free name "UltraSam N" in the segmentation, and its N."""
    segmentation = segmentation_node.GetSegmentation()
    names = {segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())}
    number = 1
    while f"{SEGMENT_NAME_PREFIX} {number}" in names:
        number += 1
    return f"{SEGMENT_NAME_PREFIX} {number}", number


def add_segment(segmentation_node, name: str | None = None, color=None) -> str:
    """Add an empty segment ("UltraSam N" with a distinct colour unless given); returns its ID."""
    default_name, number = next_segment_name(segmentation_node)
    name = name or default_name
    color = color if color is not None else segment_color(number)
    segment_id = segmentation_node.GetSegmentation().AddEmptySegment("", name, [float(c) for c in color])
    if not segment_id:
        raise UltraSamError(f"could not add a segment to {segmentation_node.GetName()!r}")
    return segment_id


def create_segmentation_node(scene, volume_node, name: str | None = None):
    """A new segmentation on ``volume_node``'s grid, under the same parent transform."""
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or f"{volume_node.GetName()} UltraSam")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
    return node


def _image_geometry_matrix(image) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return matrix_to_numpy(matrix)


class SegmentWriter:
    """Slice reads and writes of segments of ``segmentation_node`` on a volume's voxel grid.

    ``ijk_to_ras`` and ``shape_kji`` describe the grid (the volume's IJKToRAS and array shape).
    """

    def __init__(self, segmentation_node, ijk_to_ras: np.ndarray, shape_kji: tuple[int, int, int]) -> None:
        self.node = segmentation_node
        self.ijk_to_ras = np.asarray(ijk_to_ras, dtype=float)
        self.shape_kji = tuple(int(v) for v in shape_kji[:3])

    @classmethod
    def for_volume(cls, segmentation_node, volume_node) -> "SegmentWriter":
        """A writer for ``volume_node``'s grid, after checking (or adopting) the geometry."""
        writer = cls(segmentation_node, ijk_to_ras_matrix(volume_node), _shape_kji(volume_node))
        writer.check_transform(volume_node)
        writer.adopt_geometry(volume_node)
        return writer

    # ------------------------------------------------------------------ checks
    def check_transform(self, volume_node) -> None:
        if self.node.GetTransformNodeID() != volume_node.GetTransformNodeID():
            raise UltraSamError(
                f"segmentation {self.node.GetName()!r} and volume {volume_node.GetName()!r} are under different "
                "transforms; put the segmentation under the volume's transform (Data or Transforms module) "
                "or choose another segmentation"
            )

    def adopt_geometry(self, volume_node) -> None:
        """Use the volume's grid as reference geometry, or refuse when existing content is elsewhere."""
        segmentation = self.node.GetSegmentation()
        name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
        serialized = segmentation.GetConversionParameter(name)
        if serialized:
            reference = slicer.vtkOrientedImageData()
            slicer.vtkSegmentationConverter.DeserializeImageGeometry(serialized, reference, False)
            if self._same_grid(_image_geometry_matrix(reference)):
                self._check_layers()
                return
            if self._has_content():
                raise UltraSamError(
                    f"segmentation {self.node.GetName()!r} already holds segments on another image grid than volume "
                    f"{volume_node.GetName()!r} (different spacing, origin or axes); choose or create a segmentation "
                    "for this volume"
                )
        self._check_layers()
        self.node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)

    def _same_grid(self, image_to_world: np.ndarray) -> bool:
        """Same spacing and axes, and origins an integer number of voxels apart."""
        if not np.allclose(image_to_world[:3, :3], self.ijk_to_ras[:3, :3], atol=_GEOMETRY_TOLERANCE, rtol=0):
            return False
        offset = np.linalg.solve(self.ijk_to_ras[:3, :3], image_to_world[:3, 3] - self.ijk_to_ras[:3, 3])
        return bool(np.allclose(offset, np.round(offset), atol=1e-4))

    def _has_content(self) -> bool:
        segmentation = self.node.GetSegmentation()
        for n in range(segmentation.GetNumberOfSegments()):
            image = segmentation.GetNthSegment(n).GetRepresentation(BINARY_LABELMAP)
            if image is not None and not image.IsEmpty():
                return True
        return False

    def _check_layers(self) -> None:
        segmentation = self.node.GetSegmentation()
        if segmentation.GetNumberOfSegments() and segmentation.GetSourceRepresentationName() != BINARY_LABELMAP:
            raise UltraSamError(
                f"segmentation {self.node.GetName()!r} is edited as {segmentation.GetSourceRepresentationName()!r}; "
                "make binary labelmap its source representation (Segmentations module) or choose another segmentation"
            )
        for n in range(segmentation.GetNumberOfSegments()):
            image = segmentation.GetNthSegment(n).GetRepresentation(BINARY_LABELMAP)
            if image is not None and not image.IsEmpty() and not self._same_grid(_image_geometry_matrix(image)):
                raise UltraSamError(
                    f"segment {segmentation.GetNthSegment(n).GetName()!r} of {self.node.GetName()!r} is stored on "
                    "another image grid than the volume; choose or create a segmentation for this volume"
                )

    def check_segment(self, segment_id: str):
        segment = self.node.GetSegmentation().GetSegment(segment_id)
        if segment is None:
            ids = list(self.node.GetSegmentation().GetSegmentIDs())
            raise UltraSamError(f"segment {segment_id!r} is not in segmentation {self.node.GetName()!r} (it has {ids})")
        return segment

    # ------------------------------------------------------------------ slice extents
    def _slice_extent(self, axis: str, index: int) -> list[int]:
        nk, nj, ni = self.shape_kji
        extent = [0, ni - 1, 0, nj - 1, 0, nk - 1]
        a = slice_axis_index(axis)
        limit = (ni, nj, nk)[a]
        if not 0 <= index < limit:
            raise UltraSamError(f"{axis} slice {index} is outside 0..{limit - 1}")
        extent[2 * a] = extent[2 * a + 1] = index
        return extent

    def _slice_image(self, axis: str, index: int, mask: np.ndarray | None, value: int = 1) -> tuple[object, list[int]]:
        """A ``vtkOrientedImageData`` holding ``value`` where ``mask`` is set (or zeros) on one slice of the grid."""
        extent = self._slice_extent(axis, index)
        image = slicer.vtkOrientedImageData()
        image.SetImageToWorldMatrix(numpy_to_matrix(self.ijk_to_ras))
        image.SetExtent(*extent)
        image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        voxels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
        if mask is None:
            voxels[:] = 0
        else:
            dims = [extent[2 * a + 1] - extent[2 * a] + 1 for a in range(3)]
            view = voxels.reshape(dims[2], dims[1], dims[0])
            view[...] = np.where(np.asarray(mask, dtype=bool).reshape(view.shape), value, 0)
        image.Modified()
        return image, extent

    def frame_shape(self, axis: str) -> tuple[int, int]:
        nk, nj, ni = self.shape_kji
        return {"axial": (nj, ni), "coronal": (nk, ni), "sagittal": (nk, nj)}[axis]

    # ------------------------------------------------------------------ read / write
    def read_volume(self, segment_id: str) -> np.ndarray:
        """The segment as a bool ``[k, j, i]`` array on the grid."""
        nk, nj, ni = self.shape_kji
        return self._read(segment_id, [0, ni - 1, 0, nj - 1, 0, nk - 1])

    def read_slice(self, segment_id: str, axis: str, index: int) -> np.ndarray:
        """The segment on one slice, bool ``(H, W)`` in the frame convention of ``axis``."""
        return self._read(segment_id, self._slice_extent(axis, index)).reshape(self.frame_shape(axis))

    def _read(self, segment_id: str, region: list[int]) -> np.ndarray:
        """The segment inside an IJK ``region`` extent, bool ``[k, j, i]`` over that region."""
        segment = self.check_segment(segment_id)
        region = np.array(region).reshape(3, 2)
        out = np.zeros(tuple(region[::-1, 1] - region[::-1, 0] + 1), dtype=bool)
        image = segment.GetRepresentation(BINARY_LABELMAP)
        if image is None or image.IsEmpty():
            return out
        image_to_world = _image_geometry_matrix(image)
        if not self._same_grid(image_to_world):
            raise UltraSamError(f"segment {segment.GetName()!r} is stored on another image grid than the volume")
        shift = np.linalg.solve(self.ijk_to_ras[:3, :3], image_to_world[:3, 3] - self.ijk_to_ras[:3, 3])
        extent = np.array(image.GetExtent()).reshape(3, 2) + np.round(shift).astype(int)[:, None]
        low = np.maximum(extent[:, 0], region[:, 0])
        high = np.minimum(extent[:, 1], region[:, 1])
        if np.any(high < low):
            return out
        dims = extent[:, 1] - extent[:, 0] + 1
        layer = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])
        src = tuple(slice(low[a] - extent[a, 0], high[a] - extent[a, 0] + 1) for a in (2, 1, 0))
        dst = tuple(slice(low[a] - region[a, 0], high[a] - region[a, 0] + 1) for a in (2, 1, 0))
        out[dst] = layer[src] == segment.GetLabelValue()
        return out

    def _own_layer(self, segment_id: str) -> None:
        """Move the segment to a layer of its own if it shares one.

        In a shared layer the merges act on the layer, not on the segment: ``MODE_MERGE_MIN`` with
        zeros would erase the other segments on that slice, and ``MODE_MERGE_MAX`` writes the new
        pixels with another segment's label value (both seen with slicer-core 5.13). Separating
        changes only how the segment is stored, never any segment's voxels.
        """
        segmentation = self.node.GetSegmentation()
        if len(_segments_in_layer(segmentation, segment_id)) > 1:
            segmentation.SeparateSegmentLabelmap(segment_id)

    def write_slice(self, segment_id: str, axis: str, index: int, mask: np.ndarray) -> None:
        """Make the segment equal ``mask`` on one slice; nothing else changes."""
        self.check_segment(segment_id)
        mask = np.asarray(mask, dtype=bool)
        expected = self.frame_shape(axis)
        if mask.shape != expected:
            raise UltraSamError(f"mask shape {mask.shape} does not match the {axis} slice shape {expected}")
        self._own_layer(segment_id)
        zeros, extent = self._slice_image(axis, index, None)
        if not _Logic.SetBinaryLabelmapToSegment(zeros, self.node, segment_id, _Logic.MODE_MERGE_MIN, extent):
            raise UltraSamError(f"could not clear {axis} slice {index} of segment {segment_id!r}")
        if mask.any():
            # MODE_MERGE_MAX takes the voxel-wise maximum of the layer and the image as they are, so
            # the image must carry the segment's label value (not 1) or the pixels land under another label.
            label = int(self.node.GetSegmentation().GetSegment(segment_id).GetLabelValue())
            image, extent = self._slice_image(axis, index, mask, label)
            if not _Logic.SetBinaryLabelmapToSegment(image, self.node, segment_id, _Logic.MODE_MERGE_MAX, extent):
                raise UltraSamError(f"could not write {axis} slice {index} of segment {segment_id!r}")
        segment = self.node.GetSegmentation().GetSegment(segment_id)
        _Logic.SetSegmentStatus(segment, _Logic.InProgress)


def _segments_in_layer(segmentation, segment_id: str) -> list[str]:
    ids = segmentation.GetSegmentIDsForLayer(segmentation.GetLayerIndex(segment_id))
    return list(ids) if not isinstance(ids, str) else [ids]


def _shape_kji(volume_node) -> tuple[int, int, int]:
    image = volume_node.GetImageData()
    if image is None:
        raise UltraSamError(f"volume {volume_node.GetName()!r} has no voxels")
    ni, nj, nk = image.GetDimensions()
    return nk, nj, ni
