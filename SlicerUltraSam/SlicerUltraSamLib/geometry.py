"""Where markups and slice views land in a volume's voxel grid — transform-aware, Qt-free.

Slicer shows every node in *world* RAS. A volume's voxels are reached in two steps: world → the
volume's parent frame (through its parent transform, which may be linear or not) → IJK with the
volume's own RASToIJK matrix. Skipping the first step (reading ``GetNthControlPointPosition``, or
ignoring the parent transform) misplaces every prompt on tracked ultrasound, where a transform is
the normal case. The mapping is built once per call and applied to all points.

Which voxel index a slice holds constant, and what its rows and columns are, is the library's
convention (:mod:`ultrasam.frames`) and is only ever read from there, never restated here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import slicer
import vtk

from ultrasam.frames import AXES, axis_holding, check_axis, slice_axis_of

__all__ = [
    "WorldToVolume",
    "WorkingSlice",
    "matrix_to_numpy",
    "numpy_to_matrix",
    "ijk_to_ras_matrix",
    "defined_control_points",
    "roi_corners_world",
    "slice_axis_of_single_slice",
    "working_slice_from_view",
    "ijk_shape",
    "volume_to_node_matrix",
]


def matrix_to_numpy(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)


def numpy_to_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r][c]))
    return matrix


def ijk_to_ras_matrix(volume_node) -> np.ndarray:
    """The volume's IJKToRAS (in its parent frame, i.e. before its parent transform)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return matrix_to_numpy(matrix)


class WorldToVolume:
    """World RAS → the volume's parent frame (RAS) and → continuous voxel index ``(i, j, k)``.

    Built once per call (the parent transform may be linear or not) and applied to all points.
    """

    def __init__(self, volume_node) -> None:
        self._to_parent = vtk.vtkGeneralTransform()
        slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(
            None, volume_node.GetParentTransformNode(), self._to_parent
        )
        self.ras_to_ijk = np.linalg.inv(ijk_to_ras_matrix(volume_node))

    def parent_ras(self, world: np.ndarray) -> np.ndarray:
        """``(N, 3)`` world points → ``(N, 3)`` RAS in the volume's parent frame."""
        points = np.atleast_2d(np.asarray(world, dtype=float))
        if points.size == 0:
            return np.zeros((0, 3))
        return np.array([self._to_parent.TransformPoint(*map(float, p)) for p in points])

    def ijk(self, world: np.ndarray) -> np.ndarray:
        """``(N, 3)`` world points → ``(N, 3)`` continuous ``(i, j, k)`` (not rounded)."""
        local = self.parent_ras(world)
        return local @ self.ras_to_ijk[:3, :3].T + self.ras_to_ijk[:3, 3]


def _node_to_world(node) -> vtk.vtkGeneralTransform:
    transform = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(node.GetParentTransformNode(), None, transform)
    return transform


def defined_control_points(markups_node) -> list[tuple[np.ndarray, str, str]]:
    """``(world position, label, description)`` of every placed control point.

    Points still being placed (preview) or with an undefined position are skipped: they are not
    prompts yet.
    """
    points = []
    if markups_node is None:
        return points
    defined = slicer.vtkMRMLMarkupsNode.PositionDefined
    for n in range(markups_node.GetNumberOfControlPoints()):
        if markups_node.GetNthControlPointPositionStatus(n) != defined:
            continue
        position = [0.0, 0.0, 0.0]
        markups_node.GetNthControlPointPositionWorld(n, position)
        points.append(
            (
                np.array(position, dtype=float),
                markups_node.GetNthControlPointLabel(n) or f"point {n + 1}",
                markups_node.GetNthControlPointDescription(n) or "",
            )
        )
    return points


def roi_corners_world(roi_node) -> np.ndarray:
    """The 8 corners ``(8, 3)`` of an ROI box in world RAS (oriented ROIs and transforms included).

    All 8 corners, not the two corners of the axis-aligned bounds: for an oblique or flipped image
    only the projection of the whole box gives the right pixel rectangle.
    """
    size = np.array(roi_node.GetSize(), dtype=float)
    signs = np.array([[(n >> a) & 1 for a in range(3)] for n in range(8)], dtype=float) * 2 - 1
    local = signs * size / 2.0
    object_to_node = matrix_to_numpy(roi_node.GetObjectToNodeMatrix())
    in_node = local @ object_to_node[:3, :3].T + object_to_node[:3, 3]
    to_world = _node_to_world(roi_node)
    return np.array([to_world.TransformPoint(*map(float, p)) for p in in_node])


def slice_axis_of_single_slice(shape_ijk: tuple[int, int, int]) -> str | None:
    """The plane of a 2D image stored as a volume (one voxel thick), or None for a true 3D volume.

    ``nk == 1`` (the usual PNG/DICOM frame) is axial; a frame one voxel thick along i or j is
    sagittal or coronal. Such a volume has exactly one working slice: the frame itself.
    """
    for axis in AXES:
        if shape_ijk[slice_axis_of(axis)] == 1:
            return axis
    return None


@dataclass(frozen=True)
class WorkingSlice:
    """The slice prompts apply to: frames along ``axis``, number ``index``."""

    axis: str
    index: int
    alignment: float = 1.0  # |cos| between the view normal and the slice normal (1 = exactly aligned)

    def __post_init__(self) -> None:
        object.__setattr__(self, "axis", check_axis(self.axis))


def working_slice_from_view(volume_node, slice_to_ras: np.ndarray) -> WorkingSlice:
    """The voxel slice a slice view shows, from the view's SliceToRAS (world) matrix.

    The view plane is mapped into IJK (transform-aware); its normal there is the cross product of
    the mapped in-plane axes, which stays right under anisotropic spacing (a normal vector does not
    map like a position). The slice axis is the IJK axis most aligned with that normal and the
    index is where the plane's centre lies along it. An oblique view gets the nearest axis; its
    ``alignment`` says how oblique it was.
    """
    to_ijk = WorldToVolume(volume_node).ijk
    matrix = np.asarray(slice_to_ras, dtype=float)
    origin = matrix[:3, 3]
    mapped = to_ijk(np.stack([origin, origin + matrix[:3, 0], origin + matrix[:3, 1]]))
    u, v = mapped[1] - mapped[0], mapped[2] - mapped[0]
    # Scale IJK by spacing so the angle is measured in millimetres, not voxels.
    spacing = np.linalg.norm(ijk_to_ras_matrix(volume_node)[:3, :3], axis=0)
    normal = np.cross(u * spacing, v * spacing)
    norm = np.linalg.norm(normal)
    if norm < 1e-12:
        raise ValueError("the slice view plane is degenerate")
    axis_index = int(np.argmax(np.abs(normal)))
    axis = axis_holding(axis_index)
    dims = ijk_shape(volume_node)
    index = int(np.clip(np.round(mapped[0][axis_index]), 0, dims[axis_index] - 1))
    return WorkingSlice(axis, index, float(abs(normal[axis_index]) / norm))


def ijk_shape(volume_node) -> tuple[int, int, int]:
    """Number of voxels along i, j, k."""
    image = volume_node.GetImageData()
    if image is None:
        raise ValueError(f"volume {volume_node.GetName()!r} has no voxels")
    return tuple(int(d) for d in image.GetDimensions())


def volume_to_node_matrix(volume_node, node) -> np.ndarray:
    """4x4 affine from ``volume_node``'s parent frame to ``node``'s parent frame (identity when both
    sit under the same transform).

    Raises ValueError when the transforms between them are not linear: a grid does not stay a
    grid through a warp, so nothing can be written voxel for voxel across one.
    """
    between = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(
        volume_node.GetParentTransformNode(), node.GetParentTransformNode(), between
    )
    linear = vtk.vtkTransform()
    if not slicer.vtkMRMLTransformNode.IsGeneralTransformLinear(between, linear):
        raise ValueError(f"the transforms between {volume_node.GetName()!r} and {node.GetName()!r} are not linear")
    return matrix_to_numpy(linear.GetMatrix())
