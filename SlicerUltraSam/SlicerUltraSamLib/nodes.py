"""MRML nodes as the library's objects: a volume node as ``ultrasam.volume.Volume``, markups as ``Markups``.

The library converts physical prompts to frame pixels in one place (``ultrasam.prompts``), the
same code the command line uses; this module only brings Slicer's nodes into its frame. Slicer
places markups in *world* RAS while a volume's geometry is given in its *parent* frame, so every
position is first taken through the volume's parent transform (see :class:`.geometry.WorldToVolume`);
the library then works in that frame, in LPS like ITK.
"""

from __future__ import annotations


import numpy as np
from slicer import util

from ultrasam.errors import ImageError, PromptError
from ultrasam.markups import MarkupPoint, MarkupRoi, Markups, is_negative_point
from ultrasam.volume import LPS_TO_RAS, Volume

from .geometry import WorldToVolume, defined_control_points, ijk_to_ras_matrix, roi_corners_world

__all__ = [
    "volume_from_node",
    "markups_from_nodes",
    "roi_from_corners",
    "is_input_volume",
    "default_input_volume",
    "nodes_of_class",
    "new_point_list",
    "color_point_list",
    "POSITIVE_COLOR",
    "NEGATIVE_COLOR",
]

_RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])
POSITIVE_COLOR = (0.2, 0.9, 0.3)  # clicks inside the object: green
NEGATIVE_COLOR = (0.95, 0.25, 0.2)  # clicks on background: red


def volume_from_node(volume_node, voxels: np.ndarray | None = None) -> Volume:
    """The node's voxels ``[k, j, i(, c)]`` (a view unless ``voxels`` is given) and LPS geometry."""
    if volume_node is None or volume_node.GetImageData() is None:
        raise ImageError("the volume node has no voxels")
    if voxels is None:
        voxels = util.arrayFromVolume(volume_node)
    ijk_to_lps = LPS_TO_RAS @ ijk_to_ras_matrix(volume_node)
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    return Volume(voxels, spacing=spacing, origin=ijk_to_lps[:3, 3], direction=ijk_to_lps[:3, :3] / spacing)


def roi_from_corners(corners_lps: np.ndarray, name: str) -> MarkupRoi:
    """A library ROI from its 8 corners (corner ``n`` on the + side of axis ``a`` when bit ``a`` is set).

    The edges from corner 0 give the axes and sizes, so a linear parent transform (even with
    scaling) is carried over exactly.
    """
    edges = np.stack([corners_lps[1 << a] - corners_lps[0] for a in range(3)], axis=1)
    size = np.linalg.norm(edges, axis=0)
    axes = np.where(size > 1e-12, edges / np.where(size > 1e-12, size, 1.0), np.eye(3))
    return MarkupRoi(center=corners_lps.mean(axis=0), axes=axes, size=size, name=name)


def markups_from_nodes(volume_node, positive_node=None, negative_node=None, roi_node=None) -> Markups:
    """Placed control points and the ROI, in LPS of the volume's parent frame.

    Every point of ``negative_node`` is negative; a point of ``positive_node`` is negative when its
    label starts with "-" or its description says "negative" (the library's convention, shared
    with ``.mrk.json`` files on the command line).
    """
    to_volume = WorldToVolume(volume_node)
    points = []
    for node, all_negative in ((positive_node, False), (negative_node, True)):
        placed = defined_control_points(node)
        if not placed:
            continue
        local = to_volume.parent_ras(np.stack([position for position, _, _ in placed])) * _RAS_TO_LPS
        for (_, label, description), position in zip(placed, local):
            points.append(
                MarkupPoint(
                    position=position,
                    label=label,
                    description=description,
                    negative=all_negative or is_negative_point(label, description),
                    list_name=node.GetName(),
                    number=len(points) + 1,
                )
            )
    rois = ()
    if roi_node is not None:
        if roi_node.GetInsideOut():
            raise PromptError(
                f"ROI {roi_node.GetName()!r} is inside-out (it selects the outside); it cannot be a box prompt"
            )
        corners = to_volume.parent_ras(roi_corners_world(roi_node)) * _RAS_TO_LPS
        rois = (roi_from_corners(corners, roi_node.GetName() or "ROI"),)
    return Markups(tuple(points), rois)


def is_input_volume(node) -> bool:
    """A grey or colour image volume the module can segment: not a labelmap (a segmentation's
    voxels), which the input selector hides anyway."""
    return bool(node is not None and node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode"))


def default_input_volume(scene):
    """The volume to preselect: the one a slice view shows as background (what the user is looking
    at), else the most recently added image volume; None when the scene has none.

    Labelmaps and hidden nodes are never chosen: the input selector would not show them.
    """
    candidates = [
        node
        for node in nodes_of_class(scene, "vtkMRMLScalarVolumeNode")
        if is_input_volume(node) and not node.GetHideFromEditors()
    ]
    for composite in nodes_of_class(scene, "vtkMRMLSliceCompositeNode"):
        shown = scene.GetNodeByID(composite.GetBackgroundVolumeID() or "")
        if shown in candidates:
            return shown
    return candidates[-1] if candidates else None


def nodes_of_class(scene, class_name: str) -> list:
    """Every node of ``class_name`` (subclasses included) in ``scene``, in the order they were added."""
    collection = scene.GetNodesByClass(class_name)
    return [collection.GetItemAsObject(n) for n in range(collection.GetNumberOfItems())]


def color_point_list(node, color: tuple[float, float, float]) -> None:
    """Show a point list in ``color`` (placed and selected points alike), so positive and negative
    clicks are told apart at a glance."""
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is not None:
        display.SetSelectedColor(*color)
        display.SetColor(*color)


def new_point_list(scene, name: str, color: tuple[float, float, float]):
    """A new empty point list named ``name`` (made unique in the scene) in ``color``."""
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", scene.GenerateUniqueName(name))
    color_point_list(node, color)
    return node
