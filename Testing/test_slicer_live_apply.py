"""Live apply: a propagation's slices written into the segment as they arrive, one Undo, exact Cancel.

Real MRML nodes (``slicer-core``). What a segment holds is read with Slicer's own export
(``slicer.util.arrayFromSegmentBinaryLabelmap``), never with the writer under test, and compared as
exact arrays with the state taken before the run:

* ``LiveApply.add`` writes one slice: after k adds exactly those k slices changed;
* ``finish`` makes the whole run one history entry, and one Undo restores the segment exactly;
* ``cancel`` (or a run stopped part-way) leaves the segment, its status, the scene's nodes and
  the history as they were, also when the run created the segment, the segmentation or (cine)
  the segmentation sequence;
* with the real model, what ``run(onResult=...)`` hands over as the run goes equals its result;
* through the widget's ``JobRunner``, slices published by the worker reach the GUI side in order,
  before the outcome.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "SlicerUltraSam"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

slicer = pytest.importorskip("slicer")
import vtk  # noqa: E402
from slicer import util  # noqa: E402

from mrml_helpers import add_roi_node, create_headless_slicer, ijk_to_ras_matrix, numpy_to_matrix  # noqa: E402
from mrml_helpers import slicer_util_globals  # noqa: E402
from SlicerUltraSamLib import SlicerUltraSamLogic  # noqa: E402
from SlicerUltraSamLib.jobs import JobKind, JobRunner  # noqa: E402
from SlicerUltraSamLib.logic import SegmentOutcome  # noqa: E402
from SlicerUltraSamLib.segment_writer import SegmentWriter  # noqa: E402
from ultrasam.errors import UltraSamError  # noqa: E402
from ultrasam.propagate import SliceResult  # noqa: E402

SHAPE_KJI = (6, 8, 10)  # sagittal frames: rows k (6), columns j (8); slices i 0..9
_Logic = slicer.vtkSlicerSegmentationsModuleLogic


# ------------------------------------------------------------------------------------ scene helpers
@pytest.fixture
def app():
    return create_headless_slicer()


def add_volume(app, voxels: np.ndarray, ijk_to_ras: np.ndarray | None = None, transform=None):
    node = app.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "volume")
    util.updateVolumeFromArray(node, voxels)
    if ijk_to_ras is not None:
        node.SetIJKToRASMatrix(numpy_to_matrix(ijk_to_ras))
    if transform is not None:
        node.SetAndObserveTransformNodeID(transform.GetID())
    return node


def tracked_volume(app):
    """A small anisotropic, flipped volume under a probe transform (writes must still be exact)."""
    to_parent = np.eye(4)
    to_parent[:3, 3] = [10.0, -20.0, 5.0]
    transform = app.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "probe")
    transform.SetMatrixTransformToParent(numpy_to_matrix(to_parent))
    volume = add_volume(app, np.zeros(SHAPE_KJI, np.uint8), np.diag([-0.5, -0.8, 1.2, 1.0]), transform)
    return volume, to_parent


def add_point(app, volume, to_parent: np.ndarray, ijk) -> object:
    """A positive point list with one point at voxel ``ijk`` (world RAS computed here)."""
    world = to_parent @ ijk_to_ras_matrix(volume) @ np.append(np.asarray(ijk, float), 1.0)
    node = app.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "P")
    node.AddControlPointWorld(*[float(v) for v in world[:3]])
    return node


def exported(app, segmentation, segment_id, volume) -> np.ndarray:
    """The segment as Slicer itself exports it on the volume's grid (bool ``[k, j, i]``)."""
    with slicer_util_globals(app):
        return util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, volume) > 0


def status_of(segment) -> str | None:
    value = vtk.reference("")
    return str(value) if segment.GetTag(_Logic.GetStatusTagName(), value) else None


def result(index: int, mask: np.ndarray) -> SliceResult:
    return SliceResult(index, mask, 0.9, np.zeros((256, 256)), False, 4)


def random_masks(seed: int, indices) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.random(SHAPE_KJI[:2]) > 0.5 for n in indices}


def with_slices(volume: np.ndarray, masks: dict[int, np.ndarray]) -> np.ndarray:
    """``volume`` with sagittal slices replaced by ``masks``."""
    expected = volume.copy()
    for index, mask in masks.items():
        expected[:, :, index] = mask
    return expected


def segmentation_with_content(app, volume, seed: int = 1):
    """A segmentation made for the volume the standard way, holding a completed segment with content
    on sagittal slices 3..6 and a second segment sharing its layer."""
    segmentation = app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "S")
    segmentation.SetAndObserveTransformNodeID(volume.GetTransformNodeID())  # first: see create_segmentation_node
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segment_id = segmentation.GetSegmentation().AddEmptySegment("lesion", "lesion", [1, 0, 0])
    other = segmentation.GetSegmentation().AddEmptySegment("other", "other", [0, 0, 1])
    writer = SegmentWriter.for_volume(segmentation, volume)
    for index, mask in random_masks(seed, range(3, 7)).items():
        writer.write_slice(segment_id, "sagittal", index, mask)
    writer.write_slice(other, "axial", 2, np.random.default_rng(seed + 1).random((8, 10)) > 0.4)
    _Logic.SetSegmentStatus(segmentation.GetSegmentation().GetSegment(segment_id), _Logic.Completed)
    return segmentation, segment_id, other


def propagation_request(logic, volume, points, segmentation, segment_id):
    return logic.buildRequest(
        volume, points, segmentationNode=segmentation, segmentId=segment_id, sliceIndex=4, propagate=True
    )


def scene_counts(app) -> tuple[int, int]:
    return (
        app.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"),
        app.scene.GetNumberOfNodesByClass("vtkMRMLSequenceNode"),
    )


# ------------------------------------------------------------------------------------ writes, undo, cancel
def test_each_add_writes_exactly_its_slice_and_one_undo_restores_the_segment(app):
    volume, to_parent = tracked_volume(app)
    segmentation, segment_id, other = segmentation_with_content(app, volume)
    before, other_before = exported(app, segmentation, segment_id, volume), exported(app, segmentation, other, volume)
    logic = SlicerUltraSamLogic()
    request = logic.buildRequest(
        volume,
        add_point(app, volume, to_parent, (4, 3, 2)),
        segmentationNode=segmentation,
        segmentId=segment_id,
        sliceIndex=4,
        axis="sagittal",
        propagate=True,
    )
    order = [4, 5, 3, 6, 2, 7]  # keyframe first, then the sweeps' frames as they come
    masks = random_masks(7, order)

    live = logic.beginApply(request)
    for count, index in enumerate(order, start=1):
        live.add(index, result(index, masks[index]))
        written = {n: masks[n] for n in order[:count]}
        np.testing.assert_array_equal(exported(app, segmentation, segment_id, volume), with_slices(before, written))
        np.testing.assert_array_equal(live.written, with_slices(np.zeros(SHAPE_KJI, bool), written))
        assert len(logic.history) == 0 and live.indices == order[:count]
    refused = ~masks[5]  # keyframe fusion replaced frame 5's mask: written again, the last write wins
    live.add(5, result(5, refused))
    final = {**masks, 5: refused}
    np.testing.assert_array_equal(exported(app, segmentation, segment_id, volume), with_slices(before, final))

    outcome = SegmentOutcome({n: result(n, final[n]) for n in sorted(order)})
    returned = live.finish(outcome)

    np.testing.assert_array_equal(returned, with_slices(np.zeros(SHAPE_KJI, bool), final))
    assert len(logic.history) == 1 and not live.isOpen
    assert (logic.lastSegmentationNode, logic.lastSegmentId, logic.lastOutcome) == (segmentation, segment_id, outcome)
    assert status_of(segmentation.GetSegmentation().GetSegment(segment_id)) == "inprogress"
    assert logic.undo() == "propagate from sagittal slice 4 over 6 slices"
    np.testing.assert_array_equal(exported(app, segmentation, segment_id, volume), before)
    np.testing.assert_array_equal(exported(app, segmentation, other, volume), other_before)
    assert status_of(segmentation.GetSegmentation().GetSegment(segment_id)) == "completed"
    assert len(logic.history) == 0


def test_finish_writes_what_add_did_not_get(app):
    """The outcome is what counts: a frame missing from the adds, or added with another mask, is
    written at finish (``apply`` is ``beginApply`` + ``finish``)."""
    volume, to_parent = tracked_volume(app)
    logic = SlicerUltraSamLogic()
    request = logic.buildRequest(volume, add_point(app, volume, to_parent, (4, 3, 2)), sliceIndex=4, propagate=True)
    masks = random_masks(11, [3, 4, 5])
    live = logic.beginApply(request)
    live.add(4, result(4, masks[4]))
    live.add(5, result(5, ~masks[5]))
    returned = live.finish(SegmentOutcome({n: result(n, m) for n, m in masks.items()}))
    expected = with_slices(np.zeros(SHAPE_KJI, bool), masks)
    np.testing.assert_array_equal(returned, expected)
    np.testing.assert_array_equal(exported(app, logic.lastSegmentationNode, logic.lastSegmentId, volume), expected)
    assert len(logic.history) == 1


@pytest.mark.parametrize("adds", [0, 1, 3])
def test_cancel_leaves_an_existing_segment_exactly_as_before(app, adds):
    volume, to_parent = tracked_volume(app)
    segmentation, segment_id, other = segmentation_with_content(app, volume, seed=adds)
    before, other_before = exported(app, segmentation, segment_id, volume), exported(app, segmentation, other, volume)
    logic = SlicerUltraSamLogic()
    logic.history.push(_marker_operation())  # an earlier edit: still the one Undo reverts afterwards
    request = propagation_request(logic, volume, add_point(app, volume, to_parent, (4, 3, 2)), segmentation, segment_id)
    masks = random_masks(20 + adds, [4, 5, 3])

    live = logic.beginApply(request)
    for index in [4, 5, 3][:adds]:
        live.add(index, result(index, masks[index]))
    live.cancel()

    np.testing.assert_array_equal(exported(app, segmentation, segment_id, volume), before)
    np.testing.assert_array_equal(exported(app, segmentation, other, volume), other_before)
    assert status_of(segmentation.GetSegmentation().GetSegment(segment_id)) == "completed"
    assert list(segmentation.GetSegmentation().GetSegmentIDs()) == [segment_id, other]
    assert len(logic.history) == 1 and logic.lastOutcome is None and not live.isOpen
    live.cancel()  # again: nothing more to do
    with pytest.raises(UltraSamError, match="already cancelled"):
        live.add(6, result(6, masks[4]))
    with pytest.raises(UltraSamError, match="already cancelled"):
        live.finish(SegmentOutcome())


def _marker_operation():
    from SlicerUltraSamLib.history import Operation

    operation = Operation("earlier edit")
    operation.on_undo(lambda: None)
    return operation


def test_cancel_removes_the_segment_and_the_segmentation_the_run_created(app):
    volume, to_parent = tracked_volume(app)
    points = add_point(app, volume, to_parent, (4, 3, 2))
    logic = SlicerUltraSamLogic()
    counts = scene_counts(app)

    live = logic.beginApply(logic.buildRequest(volume, points, sliceIndex=4, propagate=True))
    created = live.segmentationNode
    assert created.GetScene() is app.scene and scene_counts(app) == (counts[0] + 1, counts[1])
    for index, mask in random_masks(3, [4, 5]).items():
        live.add(index, result(index, mask))
    assert exported(app, created, live.segmentId, volume).any()
    live.cancel()

    assert created.GetScene() is None and scene_counts(app) == counts and len(logic.history) == 0

    segmentation, segment_id, other = segmentation_with_content(app, volume)
    ids = list(segmentation.GetSegmentation().GetSegmentIDs())
    live = logic.beginApply(
        logic.buildRequest(volume, points, segmentationNode=segmentation, sliceIndex=4, propagate=True)
    )
    new_segment = live.segmentId
    assert new_segment not in ids
    live.add(4, result(4, random_masks(4, [4])[4]))
    live.cancel()
    assert list(segmentation.GetSegmentation().GetSegmentIDs()) == ids and len(logic.history) == 0


def test_a_failed_write_puts_back_everything_written_so_far(app):
    volume, to_parent = tracked_volume(app)
    segmentation, segment_id, _ = segmentation_with_content(app, volume)
    before = exported(app, segmentation, segment_id, volume)
    logic = SlicerUltraSamLogic()
    request = propagation_request(logic, volume, add_point(app, volume, to_parent, (4, 3, 2)), segmentation, segment_id)
    live = logic.beginApply(request)
    live.add(4, result(4, random_masks(5, [4])[4]))
    with pytest.raises(UltraSamError, match="does not match"):
        live.add(5, result(5, np.ones((3, 3), bool)))  # a mask of the wrong shape
    assert not live.isOpen
    np.testing.assert_array_equal(exported(app, segmentation, segment_id, volume), before)
    assert len(logic.history) == 0


def cine_scene(app, frames: int = 3):
    """A cine of ``frames`` 8×10 frames on item 1, with the Sequences logic running as in the application."""
    sequences_logic = slicer.vtkSlicerSequencesLogic()
    sequences_logic.SetMRMLApplicationLogic(app.app_logic)
    sequences_logic.SetMRMLScene(app.scene)
    rng = np.random.default_rng(0)
    sequence = app.scene.AddNewNodeByClass("vtkMRMLSequenceNode", "cine")
    item = slicer.vtkMRMLScalarVolumeNode()
    for n in range(frames):
        util.updateVolumeFromArray(item, rng.integers(0, 255, (1, 8, 10), dtype=np.uint8))
        sequence.SetDataNodeAtValue(item, str(n))
    browser = app.scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "cine browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    browser.SetSelectedItemNumber(1)
    sequences_logic.UpdateProxyNodesFromSequences(browser)
    return browser, browser.GetProxyNode(sequence), sequences_logic


def cancelled_cine_run(app):
    """A cine propagation into an empty segmentation, cancelled after frames 1 and 2 were written."""
    browser, proxy, sequences_logic = cine_scene(app)
    points = add_point(app, proxy, np.eye(4), (4, 3, 0))
    segmentation = app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "cine segmentation")
    counts, synchronized = scene_counts(app), browser.GetNumberOfSynchronizedSequenceNodes()
    logic = SlicerUltraSamLogic()
    live = logic.beginApply(logic.buildRequest(proxy, points, segmentationNode=segmentation, propagate=True))
    rng = np.random.default_rng(2)
    masks = {n: rng.random((8, 10)) > 0.5 for n in (1, 2)}
    for index, mask in masks.items():
        live.add(index, result(index, mask))
    stored = browser.GetSequenceNode(segmentation)
    assert stored is not None and scene_counts(app)[1] == counts[1] + 1
    np.testing.assert_array_equal(exported(app, segmentation, live.segmentId, proxy)[0], masks[1])  # on screen
    np.testing.assert_array_equal(live.written[[1, 2]], np.stack([masks[1], masks[2]]))
    live.cancel()
    return browser, segmentation, stored, logic, counts, synchronized


def test_cancelling_a_cine_run_removes_the_segmentation_sequence_it_created(app):
    browser, segmentation, stored, logic, counts, synchronized = cancelled_cine_run(app)
    assert browser.GetSequenceNode(segmentation) is None and stored.GetScene() is None
    assert scene_counts(app)[1] == counts[1] and browser.GetNumberOfSynchronizedSequenceNodes() == synchronized
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 0 and len(logic.history) == 0


def test_cancelling_a_cine_run_leaves_no_segmentation_node_behind(app):
    """Synchronizing a new sequence makes the Sequences logic create a proxy of its own; it must not stay behind."""
    _, _, _, _, counts, _ = cancelled_cine_run(app)
    assert scene_counts(app) == counts


# ------------------------------------------------------------------------------------ through the job runner
def test_published_slices_reach_the_gui_side_in_order_before_the_outcome(app):
    """The widget's path without Qt: the worker publishes each slice, polling writes it, the outcome
    finishes the run. Polling stops once half the slices are written to look at the scene mid-run."""
    volume, to_parent = tracked_volume(app)
    logic = SlicerUltraSamLogic()
    request = logic.buildRequest(volume, add_point(app, volume, to_parent, (4, 3, 2)), sliceIndex=4, propagate=True)
    order = [4, 3, 5, 2, 6]
    masks = random_masks(9, order)
    release, events = threading.Event(), []
    live = logic.beginApply(request)

    def work(job):
        for position, index in enumerate(order):
            if position == 3:
                release.wait(10)
            job.publish((index, result(index, masks[index])))
        return SegmentOutcome({n: result(n, masks[n]) for n in order})

    def add(item):
        events.append(("slice", item[0]))
        live.add(*item)

    def done(outcome):
        events.append(("done", len(outcome.results)))
        live.finish(outcome)

    runner = JobRunner()
    runner.start(JobKind.PROPAGATE, work, done, add)
    poll(runner, until=lambda: len(events) == 3)
    np.testing.assert_array_equal(
        exported(app, live.segmentationNode, live.segmentId, volume),
        with_slices(np.zeros(SHAPE_KJI, bool), {n: masks[n] for n in order[:3]}),
    )
    release.set()
    poll(runner, until=lambda: not runner.busy())

    assert events == [*(("slice", n) for n in order), ("done", 5)]
    np.testing.assert_array_equal(
        exported(app, logic.lastSegmentationNode, logic.lastSegmentId, volume),
        with_slices(np.zeros(SHAPE_KJI, bool), masks),
    )
    assert len(logic.history) == 1


def test_an_abandoned_job_delivers_no_more_slices():
    runner, items, release = JobRunner(), [], threading.Event()

    def work(job):
        job.publish(1)
        release.wait(10)
        job.publish(2)
        return "outcome"

    runner.start(JobKind.PROPAGATE, work, items.append, items.append)
    poll(runner, until=lambda: items == [1])
    runner.cancel(abandon=True)
    release.set()
    poll(runner, until=lambda: not runner.busy())
    assert items == [1]


def poll(runner: JobRunner, until, timeout_s: float = 10.0) -> None:
    """Poll as the widget's timer does until ``until()`` (or fail after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, "the job never got there"
        runner.poll()
        time.sleep(0.005)


# ------------------------------------------------------------------------------------ with the real model
@pytest.fixture(scope="module")
def litemedsam(litemedsam_checkpoint):
    from ultrasam.models import load_model

    return load_model(litemedsam_checkpoint)


def phantom_request(app, logic):
    """A box on sagittal slice 4 of an 8-slice phantom, propagated into a fresh segmentation."""
    from ultrasam.phantom import synthetic_volume
    from ultrasam.transforms import mask_to_box

    image, truth = synthetic_volume((48, 64, 8), seed=1)
    volume = add_volume(app, image, np.eye(4))
    x0, y0, x1, y1 = mask_to_box(truth[:, :, 4])  # sagittal frame: columns j, rows k
    low, high = np.array([3.5, x0 - 0.5, y0 - 0.5]), np.array([4.5, x1 - 0.5, y1 - 0.5])
    roi = add_roi_node(app, (low + high) / 2, high - low)
    segmentation = app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "S")
    request = logic.buildRequest(
        volume, roiNode=roi, segmentationNode=segmentation, sliceIndex=4, axis="sagittal", propagate=True
    )
    return request, volume, segmentation


def test_a_live_run_shows_the_final_masks_and_a_stopped_run_leaves_nothing(app, litemedsam):
    logic = SlicerUltraSamLogic(model=litemedsam)
    request, volume, segmentation = phantom_request(app, logic)
    handed = []

    live = logic.beginApply(request)
    outcome = logic.run(request, onResult=lambda index, found: handed.append(index) or live.add(index, found))

    assert handed[0] == 4 and set(handed) == set(outcome.results) and len(outcome.results) >= 4
    empty = np.zeros(volume.GetImageData().GetDimensions()[::-1], bool)
    final = with_slices(empty, {n: r.mask for n, r in outcome.results.items()})
    np.testing.assert_array_equal(live.written, final)  # what was shown is the result, before finish
    np.testing.assert_array_equal(exported(app, segmentation, live.segmentId, volume), final)
    np.testing.assert_array_equal(live.finish(outcome), final)
    logic.undo()
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 0 and len(logic.history) == 0

    # Stopped after 2 slices, as the Cancel button does (the embeddings are in the store now: fast).
    live = logic.beginApply(request)
    stopped = logic.run(request, shouldStop=lambda: len(live.indices) >= 2, onResult=live.add)
    assert stopped.cancelled and len(live.indices) == 2 and exported(app, segmentation, live.segmentId, volume).any()
    live.cancel()
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 0 and len(logic.history) == 0
    assert scene_counts(app) == (1, 0)
