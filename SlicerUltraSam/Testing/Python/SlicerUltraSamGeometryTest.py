"""In-application checks of SlicerUltraSam's geometry and writes (no model needed).

A tilted, flipped, anisotropic volume under a parent transform: a point placed on a chosen voxel
must reach the library as that voxel's pixel; writing one slice of one segment must leave every
other slice and segment as it was; undo must restore the segment exactly.
"""

import unittest

import numpy as np
import slicer
import vtk


def _matrix(array):
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r][c]))
    return matrix


class SlicerUltraSamGeometryTest(unittest.TestCase):
    def setUp(self):
        slicer.mrmlScene.Clear()
        rng = np.random.default_rng(7)
        self.voxels = rng.integers(0, 255, (6, 9, 11), dtype=np.uint8)  # [k, j, i]
        self.volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "tilted")
        slicer.util.updateVolumeFromArray(self.volume, self.voxels)
        angle = np.radians(25)
        directions = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, -1.0]])
        ijk_to_ras = np.eye(4)
        ijk_to_ras[:3, :3] = directions * np.array([0.4, 0.7, 1.3])
        ijk_to_ras[:3, 3] = [12.0, -5.0, 30.0]
        self.volume.SetIJKToRASMatrix(_matrix(ijk_to_ras))
        transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "probe")
        to_parent = np.eye(4)
        to_parent[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
        to_parent[:3, 3] = [100.0, 20.0, -7.0]
        transform.SetMatrixTransformToParent(_matrix(to_parent))
        self.volume.SetAndObserveTransformNodeID(transform.GetID())
        self.ijk_to_world = to_parent @ ijk_to_ras

    def _world(self, ijk):
        return (self.ijk_to_world @ np.append(np.asarray(ijk, float), 1.0))[:3]

    def test_point_lands_on_its_voxel(self):
        from SlicerUltraSamLib import SlicerUltraSamLogic

        points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "P")
        points.AddControlPointWorld(*self._world((7, 2, 4)))
        request = SlicerUltraSamLogic().buildRequest(
            self.volume, positivePointsNode=points, sliceIndex=7, axis="sagittal"
        )
        # sagittal slice i = 7: x = j, y = k
        np.testing.assert_allclose(request.prompts[7].points, [[2.0, 4.0]], atol=1e-6)

    def test_slice_write_and_undo_are_exact(self):
        from SlicerUltraSamLib import SlicerUltraSamLogic
        from SlicerUltraSamLib.logic import SegmentOutcome
        from ultrasam.propagate import SliceResult

        points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "P")
        points.AddControlPointWorld(*self._world((3, 4, 2)))  # a click on sagittal slice 3
        points.AddControlPointWorld(*self._world((5, 1, 1)))  # and one on slice 5
        logic = SlicerUltraSamLogic()
        rng = np.random.default_rng(1)

        def outcome(index):
            mask = rng.random((6, 9)) > 0.5  # a sagittal frame: rows k, columns j
            return SegmentOutcome({index: SliceResult(index, mask, 0.9, np.zeros((256, 256)), True)}), mask

        request = logic.buildRequest(self.volume, positivePointsNode=points, sliceIndex=3, axis="sagittal")
        first, first_mask = outcome(3)
        logic.apply(request, first)
        segmentation, segment_id = logic.lastSegmentationNode, logic.lastSegmentId
        before = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, self.volume).copy()
        np.testing.assert_array_equal(before[:, :, 3] > 0, first_mask)

        request = logic.buildRequest(
            self.volume,
            positivePointsNode=points,
            segmentationNode=segmentation,
            segmentId=segment_id,
            sliceIndex=5,
            axis="sagittal",
        )
        second, second_mask = outcome(5)
        logic.apply(request, second)
        after = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, self.volume)
        np.testing.assert_array_equal(after[:, :, 5] > 0, second_mask)
        untouched = np.ones(after.shape[2], bool)
        untouched[5] = False
        np.testing.assert_array_equal(after[:, :, untouched], before[:, :, untouched])

        logic.undo()
        restored = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, self.volume)
        np.testing.assert_array_equal(restored, before)
