"""Write one slice of one segment, leaving every other slice and every other segment untouched.

A segmentation stores segments as binary labelmaps, often several segments sharing one layer with
different label values. Replacing a whole segment (``updateSegmentBinaryLabelmapFromArray``)
costs a full-volume copy per click; ``SetBinaryLabelmapToSegment(..., MODE_REPLACE, extent)``
clears the rest of the segment. What works (same principle as Segment Editor's "Set"): two
merges restricted to the slice's extent — ``MODE_MERGE_MIN`` with zeros (erases the segment on
that slice only), then ``MODE_MERGE_MAX`` with the new mask (adds it) — on a layer that holds
only the target segment: a segment sharing its layer is first moved to its own layer (the merges
act on the whole layer; see :meth:`SegmentWriter._own_layer`).

Writes are exact only on the volume's own voxel grid, so the writer works on that grid as the
segmentation sees it: through the (linear) transforms between the volume and the segmentation.
A segmentation created the standard way for a transformed volume — not under the volume's
transform, ``SetReferenceImageGeometryParameterFromVolumeNode`` — has exactly that grid, which is
the usual case with tracked ultrasound. A segmentation without content adopts the grid (undoably,
:meth:`SegmentWriter.adopt_grid`); content on another grid, or a warping transform in between, is
an error that says what to do, never a silent resampling.

Which voxel index a slice holds constant, and its rows and columns, come from
:mod:`ultrasam.frames`.
"""

from __future__ import annotations

import colorsys
from typing import Callable

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from ultrasam.errors import UltraSamError
from ultrasam.frames import frame_shape_of, slice_axis_of

from .geometry import ijk_to_ras_matrix, matrix_to_numpy, numpy_to_matrix, volume_to_node_matrix

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
REFERENCE_ROLE = "referenceImageGeometryRef"  # the node SetReferenceImageGeometryParameterFromVolumeNode records
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
    """A new segmentation on ``volume_node``'s grid, under the same parent transform.

    The transform comes first: the reference geometry is the volume's grid as seen from the
    segmentation's frame, so setting it before would bake the transform in twice.
    """
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or f"{volume_node.GetName()} UltraSam")
    node.CreateDefaultDisplayNodes()
    node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    return node


def _image_geometry_matrix(image) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return matrix_to_numpy(matrix)


def _transform_name(node) -> str:
    transform = node.GetParentTransformNode()
    return repr(transform.GetName()) if transform is not None else "(none)"


class SegmentWriter:
    """Slice reads and writes of segments of ``segmentation_node`` on a volume's voxel grid.

    ``ijk_to_ras`` maps the grid's voxel index to the segmentation's own coordinates (its parent
    frame); ``shape_kji`` is the volume's array shape. :meth:`for_volume` builds both.
    """

    def __init__(self, segmentation_node, ijk_to_ras: np.ndarray, shape_kji: tuple[int, int, int]) -> None:
        self.node = segmentation_node
        self.ijk_to_ras = np.asarray(ijk_to_ras, dtype=float)
        self.shape_kji = tuple(int(v) for v in shape_kji[:3])

    @classmethod
    def for_volume(cls, segmentation_node, volume_node) -> "SegmentWriter":
        """A writer for ``volume_node``'s grid seen from the segmentation, once :meth:`check_grid`
        says it can be written exactly. Changes nothing in the scene."""
        try:
            volume_to_segmentation = volume_to_node_matrix(volume_node, segmentation_node)
        except ValueError:
            raise UltraSamError(
                f"segmentation {segmentation_node.GetName()!r} and volume {volume_node.GetName()!r} are related by a "
                "warping (non-linear) transform, so a slice of the volume is not a slice of the segmentation; put the "
                f"segmentation under the volume's transform {_transform_name(volume_node)} (Data module: drag it onto "
                "that transform) or choose another segmentation"
            ) from None
        ijk_to_segmentation = volume_to_segmentation @ ijk_to_ras_matrix(volume_node)
        writer = cls(segmentation_node, ijk_to_segmentation, _shape_kji(volume_node))
        writer.check_grid(volume_node.GetName())
        return writer

    # ------------------------------------------------------------------ checks (read only)
    def check_grid(self, volume_name: str = "the volume") -> None:
        """Refuse a segmentation this grid cannot be written into exactly (see the module docstring)."""
        self._check_layers()
        reference = self._reference_matrix()
        if reference is not None and not self._same_grid(reference) and self._has_content():
            raise UltraSamError(
                f"segmentation {self.node.GetName()!r} already holds segments on another image grid than volume "
                f"{volume_name!r} (different spacing, origin or axes); choose another segmentation, or none to have "
                "one created for this volume"
            )

    def _reference_matrix(self) -> np.ndarray | None:
        serialized = self.node.GetSegmentation().GetConversionParameter(
            slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
        )
        if not serialized:
            return None
        reference = slicer.vtkOrientedImageData()
        slicer.vtkSegmentationConverter.DeserializeImageGeometry(serialized, reference, False)
        return _image_geometry_matrix(reference)

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
                    "another image grid than the volume; choose another segmentation, or none to have one created"
                )

    # ------------------------------------------------------------------ changes, each with its undo
    def adopt_grid(self, volume_node) -> Callable[[], None] | None:
        """Make the grid the segmentation's reference geometry unless it already is (call after
        :meth:`check_grid`); returns what puts the previous geometry back, None when nothing changed."""
        reference = self._reference_matrix()
        if reference is not None and self._same_grid(reference):
            return None
        segmentation = self.node.GetSegmentation()
        name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
        previous, previous_node_id = (
            segmentation.GetConversionParameter(name),
            self.node.GetNodeReferenceID(REFERENCE_ROLE),
        )
        self.node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)

        def restore() -> None:
            segmentation.SetConversionParameter(name, previous)
            self.node.SetNodeReferenceID(REFERENCE_ROLE, previous_node_id)

        return restore

    def segment_state(self, segment_id: str) -> Callable[[], None]:
        """What puts back everything about the segment that writing changes besides its voxels: its
        status (writing marks it in progress) and, when it had none, an empty labelmap (restored
        slices alone would leave an all-zero labelmap on this grid, which counts as content)."""
        segment = self.check_segment(segment_id)
        tag = _Logic.GetStatusTagName()
        status = vtk.reference("")
        had_status = segment.GetTag(tag, status)
        status = str(status)
        image = segment.GetRepresentation(BINARY_LABELMAP)
        was_empty = image is None or image.IsEmpty()

        def restore() -> None:
            current = self.node.GetSegmentation().GetSegment(segment_id)
            if current is None:
                return
            if was_empty:
                _Logic.ClearSegment(self.node, segment_id)
            if had_status:
                current.SetTag(tag, status)
            else:
                current.RemoveTag(tag)

        return restore

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
        a = slice_axis_of(axis)
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
        return frame_shape_of(self.shape_kji[::-1], axis)

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


# ------------------------------------------------------------------------------ classification label
LABEL_TAG = "UltraSam.Label"  # e.g. "malignant 0.82": the prompt classifier's class and probability
LABEL_NOTICE_TAG = "UltraSam.LabelNotice"  # "research benchmark, not a diagnosis", always beside the label
UNLABELLED_NAME_TAG = "UltraSam.UnlabelledName"  # the name before the label suffix, so suffixes never pile up


def _tag(segment, name: str) -> str | None:
    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else None


def label_segment(segmentation_node, segment_id: str, label: str | None, notice: str) -> Callable[[], None] | None:
    """Show a classifier's ``label`` (``"malignant 0.82"``) on the segment: name suffix and tags.

    The name becomes ``"<name> (malignant 0.82)"`` (a previous suffix of ours is replaced, not
    stacked); the tags hold the label and ``notice``. ``label`` None removes a label of ours (the
    segment was re-segmented without a classifier, so the old one no longer describes it). Returns
    what puts the name and tags back (None when nothing changed).
    """
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        return None
    tags = (LABEL_TAG, LABEL_NOTICE_TAG, UNLABELLED_NAME_TAG)
    before_name, before = segment.GetName(), {t: _tag(segment, t) for t in tags}
    base, old = before[UNLABELLED_NAME_TAG], before[LABEL_TAG]
    if base is None or old is None or before_name != f"{base} ({old})":
        base = before_name  # never labelled by us, or renamed by the user since: keep their name
    if label is None:
        if old is None:
            return None
        segment.SetName(base)
        for tag in tags:
            segment.RemoveTag(tag)
    else:
        segment.SetName(f"{base} ({label})")
        segment.SetTag(LABEL_TAG, label)
        segment.SetTag(LABEL_NOTICE_TAG, notice)
        segment.SetTag(UNLABELLED_NAME_TAG, base)

    def restore() -> None:
        current = segmentation_node.GetSegmentation().GetSegment(segment_id)
        if current is None:
            return
        current.SetName(before_name)
        for tag, value in before.items():
            if value is None:
                current.RemoveTag(tag)
            else:
                current.SetTag(tag, value)

    return restore
