"""The SlicerUltraSam module's logic on real MRML (``slicer-core``), real ultrasound and real weights.

Expected values never come from the code under test:

* prompt placement: a point is put in world RAS at ``parent transform @ IJKToRAS @ (i, j, k)``
  of a voxel chosen by the test; the logic must hand the library that voxel's pixel, per the
  sagittal convention (frame ``i``: column ``j``, row ``k``);
* writes: checked with Slicer's own export (``slicer.util.arrayFromSegmentBinaryLabelmap``) and
  by reading the raw labelmap layers (``mrml_helpers.segment_labelmap``), not the writer's reader;
* segmentation: the library's ``Predictor`` on the same pixels with pixel prompts written by the
  test; Dice against the expert mask (BUSI) or the phantom's known mask.

Dice measured with these set-ups (LiteMedSAM weights, CPU):

* BUSI test image ``benign (102)``: box from the expert mask 0.9712; box + a click inside + a
  click outside 0.9467;
* phantom volume 48×128×16, box on the middle sagittal slice (8), propagation: all 16 slices are
  reached — LiteMedSAM keeps predicting IoU > 0.5 on speckle beyond the lesion, so the sweep does
  not stop there and the 7 lesion-free slices get false masks — mean Dice 0.7205 over the 9
  lesion slices, 0.6055 over the volume, 0.7481 on the prompted slice (with 24 slices: 0.7217,
  0.7546, 0.8408);
* cine of 4 phantom frames (lesion drifting 6 px per frame), box on frame 1, propagation: Dice
  0.735, 0.901 (prompted), 0.714, 0.573.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "SlicerUltraSam"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

slicer = pytest.importorskip("slicer")
import vtk  # noqa: E402
from slicer import util  # noqa: E402

from mrml_helpers import (  # noqa: E402
    create_headless_slicer,
    ijk_to_ras_matrix,
    numpy_to_matrix,
    segment_labelmap,
    slicer_util_globals,
)
from SlicerUltraSamLib import SlicerUltraSamLogic  # noqa: E402
from SlicerUltraSamLib.logic import SegmentOutcome  # noqa: E402
from SlicerUltraSamLib.segment_writer import SegmentWriter  # noqa: E402
from ultrasam.errors import PromptError, UltraSamError  # noqa: E402
from ultrasam.phantom import dice, synthetic_frame, synthetic_volume  # noqa: E402
from ultrasam.propagate import SliceResult  # noqa: E402
from ultrasam.transforms import mask_to_box  # noqa: E402

BUSI_IMAGE = "benign/benign (102).png"
BUSI_DICE_BOX_AND_CLICKS = 0.9467
BUSI_DICE_BOX = 0.9712
PHANTOM_LESION_SLICE_DICE = 0.7205  # mean over the slices the lesion is on
PHANTOM_VOLUME_DICE = 0.6055
CINE_PROMPTED_DICE = 0.9009
CINE_MIN_DICE = 0.5726
GEOMETRY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FRAME_OF_AXIS = {
    "sagittal": (0, (2, 1)),
    "coronal": (1, (2, 0)),
    "axial": (2, (1, 0)),
}  # slice ijk axis; (row, col) ijk axes


# ------------------------------------------------------------------------------------ scene helpers
@pytest.fixture
def app():
    return create_headless_slicer()


def add_volume(app, voxels: np.ndarray, ijk_to_ras: np.ndarray | None = None, name: str = "volume", transform=None):
    """A scalar (3D array) or vector (4D array) volume node with the given IJKToRAS."""
    cls = "vtkMRMLVectorVolumeNode" if voxels.ndim == 4 else "vtkMRMLScalarVolumeNode"
    node = app.scene.AddNewNodeByClass(cls, name)
    util.updateVolumeFromArray(node, voxels)
    if ijk_to_ras is not None:
        node.SetIJKToRASMatrix(numpy_to_matrix(ijk_to_ras))
    if transform is not None:
        node.SetAndObserveTransformNodeID(transform.GetID())
    return node


def add_transform(app, to_parent: np.ndarray):
    node = app.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "probe")
    node.SetMatrixTransformToParent(numpy_to_matrix(to_parent))
    return node


def world_of(volume_node, transform_matrix: np.ndarray | None, ijk) -> np.ndarray:
    """World RAS of continuous voxel index ``ijk``: parent transform @ IJKToRAS, computed here."""
    matrix = ijk_to_ras_matrix(volume_node)
    if transform_matrix is not None:
        matrix = transform_matrix @ matrix
    return (matrix @ np.append(np.asarray(ijk, float), 1.0))[:3]


def add_points(app, positions, name="P", labels=None):
    node = app.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    for n, position in enumerate(positions):
        index = node.AddControlPointWorld(*[float(v) for v in position])
        if labels is not None:
            node.SetNthControlPointLabel(index, labels[n])
    return node


def add_roi_around(app, volume_node, transform_matrix, ijk_low, ijk_high, name="R"):
    """An ROI whose box is exactly the voxel-index box ``ijk_low..ijk_high`` (continuous), oriented with the volume."""
    matrix = ijk_to_ras_matrix(volume_node)
    if transform_matrix is not None:
        matrix = transform_matrix @ matrix
    low, high = np.asarray(ijk_low, float), np.asarray(ijk_high, float)
    axes = matrix[:3, :3]
    sizes = np.linalg.norm(axes, axis=0) * (high - low)
    rotation = axes / np.linalg.norm(axes, axis=0)
    if np.linalg.det(rotation) < 0:  # ROI frames are right-handed: flip one axis (the box is symmetric)
        rotation[:, 2] *= -1
    object_to_world = np.eye(4)
    object_to_world[:3, :3] = rotation
    object_to_world[:3, 3] = (matrix @ np.append((low + high) / 2, 1.0))[:3]
    node = app.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
    node.SetSize(*[float(v) for v in sizes])
    node.SetAndObserveObjectToNodeMatrix(numpy_to_matrix(object_to_world))
    return node


def exported(app, segmentation_node, segment_id, volume_node) -> np.ndarray:
    """The segment as Slicer itself exports it on the volume's grid (bool ``[k, j, i]``)."""
    with slicer_util_globals(app):
        return util.arrayFromSegmentBinaryLabelmap(segmentation_node, segment_id, volume_node) > 0


def outcome_of(masks: dict[int, np.ndarray]) -> SegmentOutcome:
    """A run's outcome made of given masks (to test writing and undo without a model)."""
    return SegmentOutcome({n: SliceResult(n, m, 1.0, np.zeros((256, 256)), True) for n, m in masks.items()})


ARRAY_AXIS = {"sagittal": 2, "coronal": 1, "axial": 0}  # which axis of a [k, j, i] array a slice fixes


def take(volume: np.ndarray, axis: str, index: int) -> np.ndarray:
    return np.take(volume, index, axis=ARRAY_AXIS[axis])


def without(volume: np.ndarray, axis: str, index) -> np.ndarray:
    return np.delete(volume, index, axis=ARRAY_AXIS[axis])


# ------------------------------------------------------------------------------------ geometry
@st.composite
def geometries(draw):
    """A tilted/flipped/anisotropic IJKToRAS and a rigid parent transform (or none)."""
    angles = draw(st.lists(st.floats(-np.pi, np.pi), min_size=3, max_size=3))
    flips = np.array(draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=3, max_size=3)))
    spacing = np.array(draw(st.lists(st.floats(0.1, 3.0), min_size=3, max_size=3)))
    origin = np.array(draw(st.lists(st.floats(-100, 100), min_size=3, max_size=3)))
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, :3] = rx @ ry @ rz * flips[None, :] * spacing[None, :]
    ijk_to_ras[:3, 3] = origin
    transform = None
    if draw(st.booleans()):
        t = draw(st.lists(st.floats(-np.pi, np.pi), min_size=1, max_size=1))[0]
        transform = np.eye(4)
        transform[:3, :3] = [[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]]
        transform[:3, 3] = draw(st.lists(st.floats(-50, 50), min_size=3, max_size=3))
    return ijk_to_ras, transform


@GEOMETRY
@given(geometry=geometries(), axis=st.sampled_from(["sagittal", "coronal", "axial"]), data=st.data())
def test_points_and_roi_land_on_their_voxels(app, geometry, axis, data):
    ijk_to_ras, transform_matrix = geometry
    shape_kji = (7, 9, 11)
    transform = add_transform(app, transform_matrix) if transform_matrix is not None else None
    volume = add_volume(app, np.zeros(shape_kji, np.uint8), ijk_to_ras, transform=transform)
    shape_ijk = shape_kji[::-1]
    slice_axis, (row_axis, col_axis) = FRAME_OF_AXIS[axis]
    ijk = [data.draw(st.integers(0, n - 1)) for n in shape_ijk]
    negative = list(ijk)
    negative[row_axis] = (ijk[row_axis] + 1) % shape_ijk[row_axis]
    points = add_points(app, [world_of(volume, transform_matrix, ijk)])
    negatives = add_points(app, [world_of(volume, transform_matrix, negative)], name="N")
    # an ROI over voxels [low, high] in the frame, one voxel thick around the slice
    low = [data.draw(st.integers(0, n - 2)) for n in shape_ijk]
    high = [data.draw(st.integers(lo + 1, n - 1)) for lo, n in zip(low, shape_ijk)]
    low[slice_axis] = high[slice_axis] = ijk[slice_axis]
    roi = add_roi_around(app, volume, transform_matrix, np.array(low) - 0.5, np.array(high) + 0.5)

    request = SlicerUltraSamLogic().buildRequest(volume, points, negatives, roi, sliceIndex=ijk[slice_axis], axis=axis)

    prompt = request.prompts[ijk[slice_axis]]
    np.testing.assert_allclose(
        prompt.points, [[ijk[col_axis], ijk[row_axis]], [negative[col_axis], negative[row_axis]]], atol=1e-6
    )
    assert prompt.labels.tolist() == [1, 0]
    expected_box = [low[col_axis], low[row_axis], high[col_axis] + 1, high[row_axis] + 1]  # exclusive max corner
    np.testing.assert_allclose(prompt.box, expected_box, atol=1e-6)
    assert request.axis == axis and list(request.prompts) == [ijk[slice_axis]]
    for node in (points, negatives, roi, volume):
        app.scene.RemoveNode(node)


@GEOMETRY
@given(geometry=geometries(), axis=st.sampled_from(["sagittal", "coronal", "axial"]), data=st.data())
def test_working_slice_is_the_one_the_view_shows(app, geometry, axis, data):
    ijk_to_ras, transform_matrix = geometry
    transform = add_transform(app, transform_matrix) if transform_matrix is not None else None
    volume = add_volume(app, np.zeros((7, 9, 11), np.uint8), ijk_to_ras, transform=transform)
    slice_axis, (row_axis, col_axis) = FRAME_OF_AXIS[axis]
    index = data.draw(st.integers(0, (11, 9, 7)[slice_axis] - 1))
    to_world = ijk_to_ras if transform_matrix is None else transform_matrix @ ijk_to_ras
    # A view whose plane is the voxel slice: in-plane axes along the frame's columns and rows.
    centre = np.array([5.0, 4.0, 3.0])
    centre[slice_axis] = index
    slice_to_ras = np.eye(4)
    slice_to_ras[:3, 0] = to_world[:3, col_axis] / np.linalg.norm(to_world[:3, col_axis])
    slice_to_ras[:3, 1] = to_world[:3, row_axis] / np.linalg.norm(to_world[:3, row_axis])
    slice_to_ras[:3, 2] = np.cross(slice_to_ras[:3, 0], slice_to_ras[:3, 1])
    slice_to_ras[:3, 3] = (to_world @ np.append(centre + 0.3 * (np.arange(3) != slice_axis), 1.0))[:3]
    view = app.scene.AddNewNodeByClass("vtkMRMLSliceNode", "Yellow")
    view.GetSliceToRAS().DeepCopy(numpy_to_matrix(slice_to_ras))
    view.UpdateMatrices()

    working = SlicerUltraSamLogic().workingSlice(volume, sliceNode=view)

    assert (working.axis, working.index) == (axis, index)
    for node in (view, volume):
        app.scene.RemoveNode(node)


def test_single_frames_and_default_slice(app):
    logic = SlicerUltraSamLogic()
    frame = add_volume(app, np.zeros((1, 20, 30), np.uint8))
    assert logic.workingSlice(frame, sliceIndex=5, axis="sagittal").axis == "axial"  # a 2D frame is its own plane
    volume = add_volume(app, np.zeros((6, 8, 10), np.uint8))
    points = add_points(app, [world_of(volume, None, ijk) for ijk in ((2, 1, 1), (7, 3, 3), (7, 4, 4))])
    request = logic.buildRequest(volume, points, axis="sagittal")  # no slice named: most positive clicks
    assert request.index == 7 and list(request.prompts) == [7]
    request = logic.buildRequest(volume, points, axis="sagittal", propagate=True)
    assert list(request.prompts) == [2, 7]  # every clicked slice seeds propagation


def test_prompt_errors_are_clear(app):
    logic = SlicerUltraSamLogic()
    volume = add_volume(app, np.zeros((1, 20, 30), np.uint8))
    outside = add_points(app, [world_of(volume, None, (40, 3, 0))], labels=["far"])
    with pytest.raises(PromptError, match="far.*outside the 30x20 image"):
        logic.buildRequest(volume, outside)
    negative_only = add_points(app, [world_of(volume, None, (4, 3, 0))], name="N")
    with pytest.raises(PromptError, match="only negative"):
        logic.buildRequest(volume, negativePointsNode=negative_only)
    inside_out = add_roi_around(app, volume, None, (2, 2, -0.5), (8, 8, 0.5))
    inside_out.SetInsideOut(True)
    with pytest.raises(PromptError, match="inside-out"):
        logic.buildRequest(volume, roiNode=inside_out)
    off_image = add_roi_around(app, volume, None, (40, 30, -0.5), (50, 40, 0.5))
    with pytest.raises(PromptError, match="does not intersect"):
        logic.buildRequest(volume, roiNode=off_image)
    with pytest.raises(UltraSamError, match="single frame"):
        logic.buildRequest(volume, add_points(app, [world_of(volume, None, (4, 3, 0))]), propagate=True)


@GEOMETRY
@given(geometry=geometries(), axis=st.sampled_from(["sagittal", "coronal", "axial"]), data=st.data())
def test_roi_drawn_on_a_slice_is_that_slices_box_only(app, geometry, axis, data):
    """An ROI one voxel thick around slice n of an oblique, transformed volume (as drawn on a slice
    view) prompts slice n alone, with the box a flat ROI gives, and does not bound propagation."""
    ijk_to_ras, transform_matrix = geometry
    transform = add_transform(app, transform_matrix) if transform_matrix is not None else None
    shape_kji = (7, 9, 11)
    volume = add_volume(app, np.zeros(shape_kji, np.uint8), ijk_to_ras, transform=transform)
    slice_axis, (row_axis, col_axis) = FRAME_OF_AXIS[axis]
    count = shape_kji[::-1][slice_axis]
    n = data.draw(st.integers(0, count - 1))
    low, high = np.array([1.0, 2.0, 1.0]), np.array([5.0, 6.0, 4.0])  # voxels 1..5, 2..6, 1..4 in the frame
    low[slice_axis] = high[slice_axis] = n
    thin = add_roi_around(app, volume, transform_matrix, low - 0.5, high + 0.5, name="thin")
    flat_low, flat_high = low - 0.5, high + 0.5
    flat_low[slice_axis] = flat_high[slice_axis] = n
    flat = add_roi_around(app, volume, transform_matrix, flat_low, flat_high, name="flat")
    expected_box = [low[col_axis], low[row_axis], high[col_axis] + 1, high[row_axis] + 1]
    logic = SlicerUltraSamLogic()

    for roi in (thin, flat):
        request = logic.buildRequest(volume, roiNode=roi, sliceIndex=n, axis=axis, propagate=True)
        assert list(request.prompts) == [n]
        np.testing.assert_allclose(request.prompts[n].box, expected_box, atol=1e-6)
        assert request.frame_range == (0, count - 1)  # how far propagation goes is not the ROI's business
    for node in (thin, flat, volume):
        app.scene.RemoveNode(node)


def test_a_3d_roi_seeds_every_slice_it_crosses_without_bounding_the_sweep(app):
    volume = add_volume(app, np.zeros((6, 8, 10), np.uint8), np.diag([0.7, 0.5, 1.3, 1.0]))
    roi = add_roi_around(app, volume, None, (3.5, 1.5, 0.5), (6.5, 5.5, 4.5))  # slices 4, 5, 6 whole
    request = SlicerUltraSamLogic().buildRequest(volume, roiNode=roi, sliceIndex=5, axis="sagittal", propagate=True)
    assert list(request.prompts) == [4, 5, 6] and request.frame_range == (0, 9)
    for index in (4, 5, 6):
        np.testing.assert_allclose(request.prompts[index].box, [2, 1, 6, 5], atol=1e-6)


def test_console_arguments_of_the_wrong_type_are_clear_type_errors(app):
    volume = add_volume(app, np.zeros((6, 8, 10), np.uint8))
    points = add_points(app, [world_of(volume, None, (4, 3, 2))])
    roi = add_roi_around(app, volume, None, (3.5, 1.5, 0.5), (4.5, 5.5, 4.5))
    labelmap = app.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    util.updateVolumeFromArray(labelmap, np.zeros((6, 8, 10), np.uint8))
    logic = SlicerUltraSamLogic()
    wrong = [
        (
            dict(positivePointsNode=roi),
            r"positivePointsNode must be a point list .*got vtkMRMLMarkupsROINode 'R'; give an ROI as roiNode",
        ),
        (dict(negativePointsNode=roi), "negativePointsNode must be a point list"),
        (dict(roiNode=points), r"roiNode must be an ROI .*give point lists as positivePointsNode"),
        (dict(positivePointsNode=points, sliceIndex=4.0), "sliceIndex must be an integer, got float 4.0"),
        (dict(positivePointsNode=points, sliceIndex=True), "sliceIndex must be an integer, got bool True"),
        (dict(positivePointsNode=points, propagate="yes"), "propagate must be True or False"),
        (dict(positivePointsNode=points, segmentationNode=volume), "segmentationNode must be a segmentation"),
        (dict(positivePointsNode=points, segmentId=3), "segmentId must be a segment ID"),
        (dict(positivePointsNode=points, sliceNode=points), "sliceNode must be a slice view node"),
        (dict(positivePointsNode=points, minScore="high"), "minScore must be a number"),
    ]
    for arguments, message in wrong:
        with pytest.raises(TypeError, match=message):
            logic.segment(volume, **arguments)
    with pytest.raises(TypeError, match="volumeNode must be an image volume, got the labelmap 'labels'"):
        logic.buildRequest(labelmap, points)
    with pytest.raises(TypeError, match="volumeNode must be an image volume .*got str 'volume'"):
        logic.buildRequest("volume", points)
    with pytest.raises(ValueError, match="minScore must be between 0 and 1"):
        logic.buildRequest(volume, points, minScore=1.5)
    with pytest.raises(ValueError, match="slicing axis"):
        logic.buildRequest(volume, points, axis="oblique")
    with pytest.raises(TypeError, match="sliceIndices must be an integer"):
        logic.precompute(volume, "sagittal", [1.5])
    assert logic.buildRequest(volume, points, sliceIndex=np.int64(4), propagate=np.bool_(False)).index == 4
    assert not logic.isModelLoaded and app.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0


def test_default_input_is_the_shown_or_newest_image_never_a_labelmap(app):
    default = SlicerUltraSamLogic.defaultInputVolume
    assert default(app.scene) is None
    first = add_volume(app, np.zeros((1, 4, 5), np.uint8), name="first")
    labelmap = app.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    assert default(app.scene) is first  # the labelmap is newer, but the input selector hides it
    colour = add_volume(app, np.zeros((1, 4, 5, 3), np.uint8), name="colour")
    hidden = add_volume(app, np.zeros((1, 4, 5), np.uint8), name="hidden")
    hidden.SetHideFromEditors(True)
    assert default(app.scene) is colour  # newest image the selector shows
    view = app.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    view.SetBackgroundVolumeID(labelmap.GetID())
    assert default(app.scene) is colour
    view.SetBackgroundVolumeID(first.GetID())
    assert default(app.scene) is first  # what the user is looking at


# ------------------------------------------------------------------------------------ writes and undo
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(geometry=geometries(), axis=st.sampled_from(["sagittal", "coronal", "axial"]), seed=st.integers(0, 2**16))
def test_writing_a_slice_leaves_all_else_bit_identical(app, geometry, axis, seed):
    """Random slice writes into 3 segments (sharing layers, overlapping); after each write every
    segment, as Slicer exports it, equals a plain numpy model of what was written."""
    ijk_to_ras, transform_matrix = geometry
    transform = add_transform(app, transform_matrix) if transform_matrix is not None else None
    shape = (5, 6, 7)
    volume = add_volume(app, np.zeros(shape, np.uint8), ijk_to_ras, transform=transform)
    rng = np.random.default_rng(seed)
    segmentation = app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "S")
    segmentation.SetAndObserveTransformNodeID(volume.GetTransformNodeID())
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    ids = [segmentation.GetSegmentation().AddEmptySegment(f"s{n}", f"s{n}", [0.5, 0.5, 0.5]) for n in range(3)]
    writer = SegmentWriter.for_volume(segmentation, volume)
    expected = {s: np.zeros(shape, bool) for s in ids}
    count = shape[::-1][FRAME_OF_AXIS[axis][0]]
    for _ in range(7):
        target, index = ids[rng.integers(3)], int(rng.integers(count))
        mask = rng.random(writer.frame_shape(axis)) > rng.uniform(0.2, 0.9)
        writer.write_slice(target, axis, index, mask)
        np.moveaxis(expected[target], ARRAY_AXIS[axis], 0)[index] = mask
        for s in ids:
            np.testing.assert_array_equal(exported(app, segmentation, s, volume), expected[s])
    for s in ids:  # the raw layers agree, and so does the module's own reader
        layer, _, label = segment_labelmap(segmentation, s)
        assert (layer == label).sum() == expected[s].sum()
        np.testing.assert_array_equal(writer.read_volume(s), expected[s])
    for node in (segmentation, volume):
        app.scene.RemoveNode(node)


def test_apply_writes_slices_and_undo_restores_exactly(app):
    voxels = np.zeros((6, 8, 10), np.uint8)
    transform_matrix = np.eye(4)
    transform_matrix[:3, 3] = [10, -20, 5]
    volume = add_volume(app, voxels, np.diag([-0.5, -0.8, 1.2, 1.0]), transform=add_transform(app, transform_matrix))
    points = add_points(app, [world_of(volume, transform_matrix, (4, 2, 2))])
    logic = SlicerUltraSamLogic()
    rng = np.random.default_rng(3)
    frame = lambda: rng.random((6, 8)) > 0.5  # noqa: E731 - a sagittal frame: rows k, columns j

    request = logic.buildRequest(volume, points, sliceIndex=4, axis="sagittal")
    first = {4: frame()}
    returned = logic.apply(request, outcome_of(first))
    segmentation, segment_id = logic.lastSegmentationNode, logic.lastSegmentId
    assert segmentation.GetSegmentation().GetSegment(segment_id).GetName() == "UltraSam 1"
    assert segmentation.GetTransformNodeID() == volume.GetTransformNodeID()
    expected = np.zeros((6, 8, 10), bool)
    expected[:, :, 4] = first[4]
    np.testing.assert_array_equal(returned, expected)
    np.testing.assert_array_equal(exported(app, segmentation, segment_id, volume), expected)

    other = segmentation.GetSegmentation().AddEmptySegment("other", "other", [0, 0, 1])
    SegmentWriter.for_volume(segmentation, volume).write_slice(other, "axial", 3, rng.random((8, 10)) > 0.3)
    other_before = exported(app, segmentation, other, volume)
    state_1 = exported(app, segmentation, segment_id, volume)
    request = logic.buildRequest(
        volume, points, segmentationNode=segmentation, segmentId=segment_id, sliceIndex=4, axis="sagittal"
    )
    second = {4: frame(), 5: frame(), 6: frame()}
    logic.apply(request, outcome_of(second))
    state_2 = exported(app, segmentation, segment_id, volume)
    for index, mask in second.items():
        np.testing.assert_array_equal(state_2[:, :, index], mask)
    np.testing.assert_array_equal(without(state_2, "sagittal", [4, 5, 6]), without(state_1, "sagittal", [4, 5, 6]))
    np.testing.assert_array_equal(exported(app, segmentation, other, volume), other_before)

    assert logic.undo() == "propagate from sagittal slice 4 over 3 slices"
    np.testing.assert_array_equal(exported(app, segmentation, segment_id, volume), state_1)
    np.testing.assert_array_equal(exported(app, segmentation, other, volume), other_before)
    assert logic.undo() == "segment sagittal slice 4"
    assert segmentation.GetSegmentation().GetSegment(segment_id) is None  # created by that operation
    assert segmentation.GetScene() is None  # the segmentation node too
    assert logic.undo() is None


def test_new_segments_get_their_own_name_and_colour(app):
    volume = add_volume(app, np.zeros((1, 8, 10), np.uint8))
    points = add_points(app, [world_of(volume, None, (4, 3, 0))])
    logic = SlicerUltraSamLogic()
    segmentation = app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "S")
    colours = []
    for number in (1, 2):
        logic.apply(
            logic.buildRequest(volume, points, segmentationNode=segmentation),
            outcome_of({0: np.eye(8, 10, dtype=bool)}),
        )
        segment = segmentation.GetSegmentation().GetSegment(logic.lastSegmentId)
        assert segment.GetName() == f"UltraSam {number}"
        colours.append(segment.GetColor())
    assert np.linalg.norm(np.subtract(*colours)) > 0.3


def test_segmentation_on_another_grid_is_refused_and_untouched(app):
    volume = add_volume(app, np.zeros((1, 8, 10), np.uint8))
    other_grid = add_volume(app, np.zeros((1, 8, 10), np.uint8), np.diag([0.5, 0.5, 1.0, 1.0]), name="other")
    segmentation = app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "S")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(other_grid)
    segment_id = segmentation.GetSegmentation().AddEmptySegment("kept", "kept", [1, 0, 0])
    SegmentWriter(segmentation, ijk_to_ras_matrix(other_grid), (1, 8, 10)).write_slice(
        segment_id, "axial", 0, np.eye(8, 10, dtype=bool)
    )
    before = exported(app, segmentation, segment_id, other_grid)
    points = add_points(app, [world_of(volume, None, (4, 3, 0))])
    logic = SlicerUltraSamLogic()
    with pytest.raises(UltraSamError, match="another image grid"):
        logic.apply(
            logic.buildRequest(volume, points, segmentationNode=segmentation), outcome_of({0: np.ones((8, 10), bool)})
        )
    np.testing.assert_array_equal(exported(app, segmentation, segment_id, other_grid), before)
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 1 and not logic.canUndo


def test_output_is_checked_before_any_model_runs(app, tmp_path):
    """A wrong output is refused by buildRequest, so the model (here a checkpoint that does not even
    exist) is never reached and nothing in the scene changes."""
    volume = add_volume(app, np.zeros((6, 8, 10), np.uint8))
    points = add_points(app, [world_of(volume, None, (4, 3, 2))])
    segmentation = app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "S")
    segmentation.GetSegmentation().AddEmptySegment("kept", "kept", [1, 0, 0])
    logic = SlicerUltraSamLogic(checkpoint=tmp_path / "absent.pth")
    with pytest.raises(UltraSamError, match=r"segment 'gone' is not in segmentation 'S' \(it has \['kept'\]\)"):
        logic.segment(volume, points, segmentationNode=segmentation, segmentId="gone", sliceIndex=4, propagate=True)

    warp = app.scene.AddNewNodeByClass("vtkMRMLTransformNode", "warp")
    spline = vtk.vtkThinPlateSplineTransform()
    source, target = vtk.vtkPoints(), vtk.vtkPoints()
    for corner in np.ndindex(2, 2, 2):
        source.InsertNextPoint(*(20.0 * np.array(corner)))
        target.InsertNextPoint(*(20.0 * np.array(corner) + (3.0 if corner == (1, 1, 1) else 0.0)))
    spline.SetSourceLandmarks(source)
    spline.SetTargetLandmarks(target)
    warp.SetAndObserveTransformToParent(spline)
    segmentation.SetAndObserveTransformNodeID(warp.GetID())
    with pytest.raises(UltraSamError, match="warping .*put the segmentation under the volume's transform"):
        logic.segment(volume, points, segmentationNode=segmentation, sliceIndex=4, propagate=True)
    assert not logic.isModelLoaded and not logic.canUndo
    assert list(segmentation.GetSegmentation().GetSegmentIDs()) == ["kept"]


def conversion_state(segmentation) -> tuple[str, str | None]:
    name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    return segmentation.GetSegmentation().GetConversionParameter(name), segmentation.GetNodeReferenceID(
        "referenceImageGeometryRef"
    )


def status_of(segment) -> str | None:
    value = vtk.reference("")
    return str(value) if segment.GetTag(slicer.vtkSlicerSegmentationsModuleLogic.GetStatusTagName(), value) else None


def test_undo_restores_geometry_status_and_empty_labelmap_of_an_empty_segmentation(app):
    """An empty segmentation made for another grid takes the volume's grid to be written; undo puts
    its reference geometry, the segment's status and its empty labelmap back exactly."""
    volume = add_volume(app, np.zeros((1, 8, 10), np.uint8))
    other_grid = add_volume(app, np.zeros((3, 5, 4), np.uint8), np.diag([0.5, 0.3, 2.0, 1.0]), name="other")
    segmentation = app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "S")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(other_grid)
    segment_id = segmentation.GetSegmentation().AddEmptySegment("kept", "kept", [1, 0, 0])
    segment = segmentation.GetSegmentation().GetSegment(segment_id)
    slicer.vtkSlicerSegmentationsModuleLogic.SetSegmentStatus(
        segment, slicer.vtkSlicerSegmentationsModuleLogic.Completed
    )
    before = conversion_state(segmentation), status_of(segment)
    points = add_points(app, [world_of(volume, None, (4, 3, 0))])
    logic = SlicerUltraSamLogic()
    mask = np.eye(8, 10, dtype=bool)

    logic.apply(
        logic.buildRequest(volume, points, segmentationNode=segmentation, segmentId=segment_id), outcome_of({0: mask})
    )
    np.testing.assert_array_equal(exported(app, segmentation, segment_id, volume)[0], mask)
    assert conversion_state(segmentation)[1] == volume.GetID() and status_of(segment) == "inprogress"

    assert logic.undo() == "segment axial slice 0"
    assert (conversion_state(segmentation), status_of(segment)) == before
    assert segment.GetRepresentation("Binary labelmap").IsEmpty()
    # As before: the segmentation can take yet another grid (an all-zero labelmap would count as content).
    assert SegmentWriter.for_volume(segmentation, other_grid).adopt_grid(other_grid) is None


def test_undo_restores_a_segments_status_and_content(app):
    volume = add_volume(app, np.zeros((6, 8, 10), np.uint8))
    points = add_points(app, [world_of(volume, None, (4, 3, 2))])
    segmentation = app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "S")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segment_id = segmentation.GetSegmentation().AddEmptySegment("done", "done", [1, 0, 0])
    rng = np.random.default_rng(5)
    SegmentWriter.for_volume(segmentation, volume).write_slice(segment_id, "sagittal", 4, rng.random((6, 8)) > 0.5)
    segment = segmentation.GetSegmentation().GetSegment(segment_id)
    slicer.vtkSlicerSegmentationsModuleLogic.SetSegmentStatus(
        segment, slicer.vtkSlicerSegmentationsModuleLogic.Completed
    )
    content, geometry = exported(app, segmentation, segment_id, volume), conversion_state(segmentation)
    logic = SlicerUltraSamLogic()

    request = logic.buildRequest(volume, points, segmentationNode=segmentation, segmentId=segment_id, sliceIndex=4)
    logic.apply(request, outcome_of({4: rng.random((6, 8)) > 0.5, 5: rng.random((6, 8)) > 0.5}))
    assert status_of(segment) == "inprogress"
    logic.undo()

    assert status_of(segment) == "completed" and conversion_state(segmentation) == geometry
    np.testing.assert_array_equal(exported(app, segmentation, segment_id, volume), content)


def test_segmentation_made_the_standard_way_for_a_transformed_volume_is_written_exactly(app):
    """Tracked ultrasound: the volume sits under a probe transform, the segmentation (made for it the
    standard way) does not. Masks land on the volume's voxels, seen through the transform, exactly."""
    transform_matrix = np.eye(4)
    angle = 0.4
    transform_matrix[:3, :3] = [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    transform_matrix[:3, 3] = [12.0, -7.0, 3.0]
    ijk_to_ras = np.array([[0.0, 0.4, 0.0, 5.0], [-0.6, 0.0, 0.0, 1.0], [0.0, 0.0, 1.1, -2.0], [0.0, 0.0, 0.0, 1.0]])
    volume = add_volume(app, np.zeros((6, 8, 10), np.uint8), ijk_to_ras, transform=add_transform(app, transform_matrix))
    segmentation = app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "S")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)  # as Segment Editor does
    points = add_points(app, [world_of(volume, transform_matrix, (4, 3, 2))])
    logic = SlicerUltraSamLogic()
    rng = np.random.default_rng(8)
    masks = {4: rng.random((6, 8)) > 0.5, 5: rng.random((6, 8)) > 0.5}

    returned = logic.apply(
        logic.buildRequest(volume, points, segmentationNode=segmentation, sliceIndex=4), outcome_of(masks)
    )

    assert segmentation.GetTransformNodeID() is None  # left where the user put it
    expected = np.zeros((6, 8, 10), bool)
    for index, mask in masks.items():
        expected[:, :, index] = mask
    np.testing.assert_array_equal(returned, expected)
    np.testing.assert_array_equal(exported(app, segmentation, logic.lastSegmentId, volume), expected)
    layer, layer_to_ras, label = segment_labelmap(segmentation, logic.lastSegmentId)
    grid_to_segmentation = transform_matrix @ ijk_to_ras  # the volume's voxels seen from the segmentation
    offset = np.round(
        np.linalg.solve(grid_to_segmentation[:3, :3], layer_to_ras[:3, 3] - grid_to_segmentation[:3, 3])
    ).astype(int)
    np.testing.assert_allclose(layer_to_ras[:3, :3], grid_to_segmentation[:3, :3], atol=1e-9)
    placed = np.zeros((6, 8, 10), bool)
    k, j, i = offset[::-1]
    placed[k : k + layer.shape[0], j : j + layer.shape[1], i : i + layer.shape[2]] = layer == label
    np.testing.assert_array_equal(placed, expected)
    logic.undo()
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 0


def test_logic_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None; sys.path.insert(0, 'SlicerUltraSam');"
        "from SlicerUltraSamLib import SlicerUltraSamLogic;"
        "import SlicerUltraSamLib.dependencies, SlicerUltraSamLib.sequences;"
        "logic = SlicerUltraSamLogic(); print(logic.availableDevices(), 'torch' in sys.modules and sys.modules['torch'] is None)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("['auto', 'cpu'] True")


# ------------------------------------------------------------------------------------ with the real model
@pytest.fixture(scope="module")
def litemedsam(litemedsam_checkpoint):
    from ultrasam.models import load_model

    return load_model(litemedsam_checkpoint)


def busi_case(data_dir: Path):
    """The BUSI test-split image and its expert mask (the split file names it)."""
    split = json.loads((data_dir / "splits.json").read_text())["busi"]["test"]
    assert BUSI_IMAGE in split
    path = data_dir / "busi" / "Dataset_BUSI_with_GT" / BUSI_IMAGE
    from ultrasam.readers import load_stack

    volume = load_stack(path).volume  # read as the library reads it: RGB, ITK geometry
    truth = np.asarray(Image.open(path.with_name(path.stem + "_mask.png")))
    return volume, (truth[..., 0] if truth.ndim == 3 else truth) > 127


def test_busi_frame_segment_equals_library_and_reaches_its_dice(app, data_dir, litemedsam):
    from ultrasam.predictor import Predictor

    volume, truth = busi_case(data_dir)
    node = add_volume(app, volume.array, volume.ijk_to_ras(), name="busi")  # a single-slice RGB volume
    assert util.arrayFromVolume(node).shape == (1, *truth.shape, 3)
    x0, y0, x1, y1 = mask_to_box(truth)
    rows, cols = np.nonzero(truth)
    inside = (int(np.median(cols)), int(np.median(rows)))
    if not truth[inside[1], inside[0]]:
        inside = (int(cols[len(cols) // 2]), int(rows[len(rows) // 2]))
    outside = (max(0, int(x0) - 15), max(0, int(y0) - 15))
    positive = add_points(app, [world_of(node, None, (*inside, 0))], name="P")
    negative = add_points(app, [world_of(node, None, (*outside, 0))], name="N")
    roi = add_roi_around(app, node, None, (x0 - 0.5, y0 - 0.5, -0.5), (x1 - 0.5, y1 - 0.5, 0.5))
    logic = SlicerUltraSamLogic(model=litemedsam)

    mask = logic.segment(node, positive, negative, roi)
    box_only = logic.segment(node, roiNode=roi, segmentationNode=logic.lastSegmentationNode)

    library = Predictor(litemedsam)
    library.set_image(volume.array[0])
    expected = library.predict(
        points=np.array([inside, outside], float), labels=np.array([1, 0]), box=np.array([x0, y0, x1, y1])
    )
    expected_box = library.predict(box=np.array([x0, y0, x1, y1]))
    assert mask.shape == (1, *truth.shape) and box_only.shape == (1, *truth.shape)
    np.testing.assert_array_equal(mask[0], expected.mask)
    np.testing.assert_array_equal(box_only[0], expected_box.mask)
    segmentation = logic.lastSegmentationNode
    first, second = segmentation.GetSegmentation().GetSegmentIDs()
    np.testing.assert_array_equal(exported(app, segmentation, first, node), mask)
    np.testing.assert_array_equal(exported(app, segmentation, second, node), box_only)
    assert logic.predictor.encoded == 1  # the second prompt only ran the decoder
    assert dice(mask[0], truth) == pytest.approx(BUSI_DICE_BOX_AND_CLICKS, abs=0.005)
    assert dice(box_only[0], truth) == pytest.approx(BUSI_DICE_BOX, abs=0.005)


def test_clicks_alone_for_a_box_only_model_are_warned_about(app, litemedsam):
    """LiteMedSAM was trained on boxes: clicks without an ROI give poor masks, and the status says so."""
    image, truth = synthetic_frame(64, 80, seed=2)
    volume = add_volume(app, image[None])
    rows, cols = np.nonzero(truth)
    points = add_points(app, [world_of(volume, None, (int(np.median(cols)), int(np.median(rows)), 0))])
    x0, y0, x1, y1 = mask_to_box(truth)
    roi = add_roi_around(app, volume, None, (x0 - 0.5, y0 - 0.5, -0.5), (x1 - 0.5, y1 - 0.5, 0.5))
    logic = SlicerUltraSamLogic(model=litemedsam)
    assert not litemedsam.spec.supports("point")

    request = logic.buildRequest(volume, points)
    outcome = logic.run(request)
    assert outcome.warnings == [
        "litemedsam was trained on boxes only: clicks without an ROI (on axial slice [0]) give poor or empty masks; "
        "draw an ROI around the object, or choose a model that takes clicks (ultrasam_lite, the default)"
    ]
    assert logic.outcomeMessage(request, outcome).endswith(outcome.warnings[0])
    assert (
        logic.run(logic.buildRequest(volume, points, roiNode=roi)).warnings == []
    )  # a box is there: nothing to warn about


@pytest.mark.slow
def test_phantom_volume_propagation(app, litemedsam):
    image, truth = synthetic_volume((48, 128, 16), seed=1)
    volume = add_volume(app, image, np.diag([1.0, 1.0, 1.0, 1.0]))
    middle = 8
    x0, y0, x1, y1 = mask_to_box(truth[:, :, middle])  # sagittal frame: columns j, rows k
    roi = add_roi_around(app, volume, None, (middle - 0.5, x0 - 0.5, y0 - 0.5), (middle + 0.5, x1 - 0.5, y1 - 0.5))
    logic = SlicerUltraSamLogic(model=litemedsam)
    assert logic.precompute(volume, "sagittal", [middle]) == 1

    mask = logic.segment(volume, roiNode=roi, sliceIndex=middle, axis="sagittal", propagate=True)

    slices = sorted(logic.lastOutcome.results)
    # every kept slice but the precomputed one, plus at most the frame each sweep looked at and refused;
    # the look-ahead worker encodes into the logic's store (its frames count in the run's total)
    assert len(slices) - 1 <= logic.lastOutcome.encoded <= len(slices) + 1
    assert len(logic.store) == logic.lastOutcome.encoded + 1
    lesion = np.flatnonzero(truth.any(axis=(0, 1)))
    assert set(lesion) <= set(slices) and slices == list(range(slices[0], slices[-1] + 1))
    per_slice = [dice(mask[:, :, i], truth[:, :, i]) for i in lesion]
    written = exported(app, logic.lastSegmentationNode, logic.lastSegmentId, volume)
    np.testing.assert_array_equal(written, mask)
    assert not without(mask, "sagittal", slices).any()
    assert np.mean(per_slice) >= PHANTOM_LESION_SLICE_DICE - 0.02
    assert dice(mask, truth) >= PHANTOM_VOLUME_DICE - 0.02


def test_cine_propagation_fills_every_frame_and_undoes(app, litemedsam):
    from ultrasam.phantom import Lesion

    sequences_logic = slicer.vtkSlicerSequencesLogic()
    sequences_logic.SetMRMLApplicationLogic(app.app_logic)
    sequences_logic.SetMRMLScene(app.scene)
    frames, truths = [], []
    for n in range(4):  # a lesion drifting right, a fresh speckle pattern each frame
        image, truth = synthetic_frame(160, 200, Lesion(center=(80.0, 90.0 + 6 * n), radii=(28.0, 36.0)), seed=n)
        frames.append(image)
        truths.append(truth)
    sequence = app.scene.AddNewNodeByClass("vtkMRMLSequenceNode", "cine")
    item = slicer.vtkMRMLScalarVolumeNode()
    for n, image in enumerate(frames):
        util.updateVolumeFromArray(item, image[None])
        item.SetSpacing(0.2, 0.2, 1.0)
        sequence.SetDataNodeAtValue(item, str(n))
    browser = app.scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "cine browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    browser.SetSelectedItemNumber(1)
    sequences_logic.UpdateProxyNodesFromSequences(browser)
    proxy = browser.GetProxyNode(sequence)
    np.testing.assert_array_equal(util.arrayFromVolume(proxy)[0], frames[1])
    x0, y0, x1, y1 = mask_to_box(truths[1])
    roi = add_roi_around(app, proxy, None, (x0 - 0.5, y0 - 0.5, -0.5), (x1 - 0.5, y1 - 0.5, 0.5))
    segmentation = app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "cine segmentation")
    logic = SlicerUltraSamLogic(model=litemedsam)

    masks = logic.segment(proxy, roiNode=roi, segmentationNode=segmentation, propagate=True)

    assert masks.shape == (4, 160, 200) and sorted(logic.lastOutcome.results) == [0, 1, 2, 3]
    segment_id = logic.lastSegmentId
    stored = browser.GetSequenceNode(segmentation)
    assert stored is not None and stored.GetNumberOfDataNodes() == 4
    for n in range(4):
        item_segmentation = stored.GetDataNodeAtValue(str(n))
        layer, _, label = segment_labelmap(item_segmentation, segment_id)
        written = SegmentWriter(item_segmentation, ijk_to_ras_matrix(proxy), (1, 160, 200)).read_volume(segment_id)[0]
        np.testing.assert_array_equal(written, masks[n])
        assert (layer == label).sum() == masks[n].sum()
    np.testing.assert_array_equal(exported(app, segmentation, segment_id, proxy)[0], masks[1])  # the frame on screen
    browser.SetSelectedItemNumber(3)
    sequences_logic.UpdateProxyNodesFromSequences(browser)
    np.testing.assert_array_equal(exported(app, segmentation, segment_id, proxy)[0], masks[3])
    scores = [dice(masks[n], truths[n]) for n in range(4)]
    assert scores[1] >= CINE_PROMPTED_DICE - 0.02 and min(scores) >= CINE_MIN_DICE - 0.02

    logic.undo()
    assert browser.GetSequenceNode(segmentation) is None and stored.GetScene() is None
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 0


def test_missing_weights_and_gpu_are_clear_errors(app, tmp_path, monkeypatch):
    import torch

    from ultrasam.errors import WeightsError
    from ultrasam.models import resolve_device

    monkeypatch.setenv("ULTRASAM_CACHE_DIR", str(tmp_path))  # an empty weights cache
    logic = SlicerUltraSamLogic(weightsName="sam_vit_b", allowDownload=False)
    assert logic.weightsToDownload().name == "sam_vit_b"
    with pytest.raises(WeightsError, match="not downloaded yet"):
        logic.model
    assert not any(tmp_path.iterdir())  # nothing was fetched without consent
    if not torch.cuda.is_available():
        with pytest.raises(UltraSamError, match="no CUDA GPU"):
            resolve_device("cuda")
        assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UltraSamError, match="unknown device"):
        resolve_device("tpu")


def test_a_further_click_refines_the_last_mask_and_a_new_start_does_not(app, data_dir):
    """With the same frame and the earlier clicks kept, the previous low-res logits are the mask
    prompt (as the default model was trained); a changed first click starts afresh."""
    from ultrasam.models import open_model
    from ultrasam.predictor import Predictor

    model = open_model(device="cpu")  # the default, UltraSam-Lite: trained for click sequences
    volume, truth = busi_case(data_dir)
    node = add_volume(app, volume.array, volume.ijk_to_ras(), name="busi")
    rows, cols = np.nonzero(truth)
    first = (int(cols[len(cols) // 2]), int(rows[len(rows) // 2]))
    second = (int(cols.min()) + 2, int(rows[np.argmin(cols)]))
    positive = add_points(app, [world_of(node, None, (*first, 0))], name="P")
    logic = SlicerUltraSamLogic(model=model)
    one = logic.segment(node, positive)
    positive.AddControlPoint(vtk.vtkVector3d(*world_of(node, None, (*second, 0))))
    two = logic.segment(node, positive, segmentationNode=logic.lastSegmentationNode)

    library = Predictor(model)
    library.set_image(volume.array[0])
    clicked = library.predict(points=np.array([first], float), labels=np.array([1]))
    refined = library.predict(
        points=np.array([first, second], float), labels=np.array([1, 1]), mask_input=clicked.logits[None]
    )
    plain = library.predict(points=np.array([first, second], float), labels=np.array([1, 1]))
    assert not np.array_equal(refined.mask, plain.mask)  # the logits do change the answer here
    np.testing.assert_array_equal(one[0], clicked.mask)
    np.testing.assert_array_equal(two[0], refined.mask)

    positive.SetNthControlPointPosition(0, *world_of(node, None, (first[0] + 3, first[1], 0)))
    fresh = logic.segment(node, positive, segmentationNode=logic.lastSegmentationNode)
    anew = library.predict(points=np.array([(first[0] + 3, first[1]), second], float), labels=np.array([1, 1]))
    np.testing.assert_array_equal(fresh[0], anew.mask)
