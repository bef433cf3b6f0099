"""Headless MRML set-up with the real ``slicer-core`` classes, as plain functions.

Tests (and the Slicer-module tests) use these to check our files against what Slicer itself
reads and writes: a scene with the application logic and the Colors, Volumes, Segmentations
and Markups logics registered (the Segmentations logic registers the labelmap converter rules;
without it a segmentation cannot even hold an empty binary-labelmap segment).

Nothing here is a fixture, so any test module or script can build as many scenes as it needs.
"""

from __future__ import annotations

import contextlib
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np


@dataclass
class HeadlessSlicer:
    """A scene plus the module logics that Slicer's own readers and writers expect."""

    scene: object
    app_logic: object
    color_logic: object
    volumes_logic: object
    segmentations_logic: object
    markups_logic: object


def create_headless_slicer() -> HeadlessSlicer:
    """A fresh scene with application, colour, volumes, segmentations and markups logics."""
    import slicer

    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)

    color_logic = slicer.vtkMRMLColorLogic()
    color_logic.SetMRMLApplicationLogic(app_logic)
    color_logic.SetMRMLScene(scene)  # adds the default colour tables (labelmaps, segmentations)

    def module_logic(cls):
        logic = cls()
        logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        return logic

    volumes_logic = module_logic(slicer.vtkSlicerVolumesLogic)
    segmentations_logic = module_logic(slicer.vtkSlicerSegmentationsModuleLogic)
    markups_logic = module_logic(slicer.vtkSlicerMarkupsLogic)
    app_logic.SetModuleLogic("Colors", color_logic)
    app_logic.SetModuleLogic("Volumes", volumes_logic)
    app_logic.SetModuleLogic("Segmentations", segmentations_logic)
    app_logic.SetModuleLogic("Markups", markups_logic)
    return HeadlessSlicer(scene, app_logic, color_logic, volumes_logic, segmentations_logic, markups_logic)


@contextlib.contextmanager
def slicer_util_globals(app: HeadlessSlicer) -> Iterator[None]:
    """Temporarily provide ``slicer.mrmlScene`` and ``slicer.modules`` for ``slicer.util`` helpers.

    ``slicer.util`` functions such as ``updateSegmentBinaryLabelmapFromArray`` look these up as
    globals, which only the Slicer application defines. The previous values are restored.
    """
    import slicer

    missing = object()
    saved = {name: getattr(slicer, name, missing) for name in ("mrmlScene", "modules")}
    slicer.mrmlScene = app.scene
    slicer.modules = types.SimpleNamespace(
        volumes=types.SimpleNamespace(logic=lambda: app.volumes_logic),
        segmentations=types.SimpleNamespace(logic=lambda: app.segmentations_logic),
        markups=types.SimpleNamespace(logic=lambda: app.markups_logic),
    )
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                delattr(slicer, name)
            else:
                setattr(slicer, name, value)


def matrix_to_numpy(vtk_matrix) -> np.ndarray:
    """A ``vtkMatrix4x4`` as a 4x4 float array."""
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)


def numpy_to_matrix(array: np.ndarray):
    """A 4x4 array as a ``vtkMatrix4x4``."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def load_volume_node(app: HeadlessSlicer, path: str | Path, labelmap: bool = False):
    """Read an image file with Slicer's own volume reader (ITK archetype storage node)."""
    import slicer

    cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = app.scene.AddNewNodeByClass(cls, Path(path).stem)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    app.scene.AddNode(storage)
    storage.SetFileName(str(path))
    storage.SetSingleFile(True)  # a PNG is otherwise taken as the archetype of a numbered series
    if labelmap:
        storage.SetCenterImage(False)
    if not storage.ReadData(node):
        raise RuntimeError(f"Slicer could not read volume {path}")
    return node


def ras_to_ijk_matrix(volume_node) -> np.ndarray:
    """The node's RAS→IJK matrix as Slicer computes it."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume_node.GetRASToIJKMatrix(matrix)
    return matrix_to_numpy(matrix)


def ijk_to_ras_matrix(volume_node) -> np.ndarray:
    """The node's IJK→RAS matrix as Slicer computes it."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return matrix_to_numpy(matrix)


def volume_node_array(volume_node) -> np.ndarray:
    """Voxels of a volume node, ``[k, j, i]`` (+components), as ``slicer.util`` returns them."""
    from slicer import util

    return np.array(util.arrayFromVolume(volume_node))


def add_fiducial_node(app: HeadlessSlicer, points_ras, labels=None, descriptions=None, name: str = "F"):
    """A point list with control points given in RAS (world) coordinates."""
    node = app.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    for n, point in enumerate(np.asarray(points_ras, dtype=float)):
        label = labels[n] if labels is not None else f"{name}-{n + 1}"
        index = node.AddControlPointWorld(*[float(v) for v in point], label)
        if descriptions is not None:
            node.SetNthControlPointDescription(index, descriptions[n])
    return node


def add_roi_node(app: HeadlessSlicer, center_ras, size, rotation_ras: np.ndarray | None = None, name: str = "R"):
    """A box ROI: object axes = columns of ``rotation_ras`` (RAS), centred at ``center_ras``."""
    node = app.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
    object_to_node = np.eye(4)
    object_to_node[:3, :3] = np.eye(3) if rotation_ras is None else np.asarray(rotation_ras, dtype=float)
    object_to_node[:3, 3] = np.asarray(center_ras, dtype=float)
    node.SetSize(*[float(v) for v in size])
    node.SetAndObserveObjectToNodeMatrix(numpy_to_matrix(object_to_node))
    return node


def write_markups_node(app: HeadlessSlicer, node, path: str | Path, coordinate_system: str = "LPS") -> Path:
    """Write a markups node with its default (Slicer) JSON storage node, in LPS or RAS."""
    import slicer

    storage = node.CreateDefaultStorageNode()
    app.scene.AddNode(storage)
    node.SetAndObserveStorageNodeID(storage.GetID())
    systems = {
        "LPS": slicer.vtkMRMLStorageNode.CoordinateSystemLPS,
        "RAS": slicer.vtkMRMLStorageNode.CoordinateSystemRAS,
    }
    storage.SetCoordinateSystem(systems[coordinate_system])
    storage.SetFileName(str(path))
    if not storage.WriteData(node):
        raise RuntimeError(f"Slicer could not write markups to {path}")
    return Path(path)


def read_markups_file(app: HeadlessSlicer, path: str | Path):
    """Read a ``.mrk.json`` with Slicer's markups JSON reader; returns the node of its first markup.

    ROIs need the ROI-specific storage node: the generic one drops their size and orientation.
    """
    import json

    import slicer

    first_type = json.loads(Path(path).read_text())["markups"][0].get("type")
    storage_class = (
        slicer.vtkMRMLMarkupsROIJsonStorageNode if first_type == "ROI" else slicer.vtkMRMLMarkupsJsonStorageNode
    )
    storage = storage_class()
    app.scene.AddNode(storage)
    node = storage.AddNewMarkupsNodeFromFile(str(path))
    if node is None:
        raise RuntimeError(f"Slicer could not read markups {path}")
    return node


def read_segmentation(app: HeadlessSlicer, path: str | Path):
    """Read a ``.seg.nrrd`` with Slicer's segmentation storage node; returns the segmentation node."""
    import slicer

    node = app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", Path(path).name)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    app.scene.AddNode(storage)
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise RuntimeError(f"Slicer could not read segmentation {path}")
    node.SetAndObserveStorageNodeID(storage.GetID())
    return node


def write_segmentation(app: HeadlessSlicer, node, path: str | Path) -> Path:
    """Write a segmentation node with Slicer's own writer (reference for our writer's header)."""
    import slicer

    storage = slicer.vtkMRMLSegmentationStorageNode()
    app.scene.AddNode(storage)
    node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    if not storage.WriteData(node):
        raise RuntimeError(f"Slicer could not write segmentation {path}")
    return Path(path)


def oriented_image_to_numpy(image) -> tuple[np.ndarray, np.ndarray]:
    """A ``vtkOrientedImageData`` as (array ``[k, j, i]`` over its extent, 4x4 IJK→RAS of index 0).

    The returned matrix maps the array's own index (0 at the extent's start) to RAS, so two
    images can be compared without caring how each one chose its extent.
    """
    import vtk
    from vtk.util import numpy_support

    extent = image.GetExtent()
    dims = [extent[2 * a + 1] - extent[2 * a] + 1 for a in range(3)]
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    array = scalars.reshape(dims[2], dims[1], dims[0]).copy()
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    image_to_ras = matrix_to_numpy(matrix)
    start = np.array([extent[0], extent[2], extent[4], 1.0])
    shifted = image_to_ras.copy()
    shifted[:, 3] = image_to_ras @ start
    return array, shifted


def segment_labelmap(segmentation_node, segment_id: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(layer array ``[k, j, i]``, IJK→RAS of index 0, the segment's label value) of one segment."""
    segmentation = segmentation_node.GetSegmentation()
    segment = segmentation.GetSegment(segment_id)
    image = segment.GetRepresentation("Binary labelmap")
    array, ijk_to_ras = oriented_image_to_numpy(image)
    return array, ijk_to_ras, int(segment.GetLabelValue())
