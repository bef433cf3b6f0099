"""What one segmentation run is asked to do: the console API's arguments as one checked value.

The console (``logic.segment(...)``), the widget (from its parameter node) and the tests describe a
run with the same :class:`SegmentInputs`. Its checks run when it is made, before anything is read
from the scene, and a wrong argument is a ``TypeError`` (or ``ValueError``) that names it: an ROI
node given as a point list is not silently taken for a click, a float slice index is not silently
truncated, ``True`` is not slice 1.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from ultrasam.frames import check_axis

__all__ = ["SegmentInputs", "as_inputs", "require_node", "require_index"]

_KINDS = {
    "vtkMRMLScalarVolumeNode": "an image volume",
    "vtkMRMLMarkupsFiducialNode": "a point list",
    "vtkMRMLMarkupsROINode": "an ROI",
    "vtkMRMLSegmentationNode": "a segmentation",
    "vtkMRMLSliceNode": "a slice view node",
    "vtkMRMLSequenceBrowserNode": "a sequence browser",
}


def _describe(value: object) -> str:
    if hasattr(value, "GetClassName") and hasattr(value, "GetName"):
        return f"{value.GetClassName()} {value.GetName()!r}"
    return f"{type(value).__name__} {value!r}"[:120]


def require_node(value: object, argument: str, class_name: str, optional: bool = True) -> None:
    """A TypeError unless ``value`` is a node of ``class_name`` (or a subclass), or None when ``optional``."""
    if value is None and optional:
        return
    if value is not None and hasattr(value, "IsA") and value.IsA(class_name):
        return
    hint = ""
    if hasattr(value, "IsA") and value.IsA("vtkMRMLMarkupsROINode"):
        hint = "; give an ROI as roiNode"
    elif hasattr(value, "IsA") and value.IsA("vtkMRMLMarkupsFiducialNode"):
        hint = "; give point lists as positivePointsNode or negativePointsNode"
    raise TypeError(f"{argument} must be {_KINDS.get(class_name, 'a')} ({class_name}), got {_describe(value)}{hint}")


def require_index(value: object, argument: str) -> int:
    """``value`` as an int when it is an integer (numpy integers too); a TypeError for a float or a bool,
    which would otherwise be truncated or read as 0/1 without a word."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument} must be an integer, got {_describe(value)}")
    return int(value)


def _require_bool(value: object, argument: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{argument} must be True or False, got {_describe(value)}")
    return bool(value)


def _require_fraction(value: object, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argument} must be a number between 0 and 1, got {_describe(value)}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{argument} must be between 0 and 1, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SegmentInputs:
    """One run's arguments (see :meth:`SlicerUltraSamLogic.segment` for what each means), checked.

    Field names are the console API's keyword arguments, so ``SegmentInputs(volume, roiNode=roi)``
    reads like ``logic.segment(volume, roiNode=roi)``.
    """

    volumeNode: object
    positivePointsNode: object = None
    negativePointsNode: object = None
    roiNode: object = None
    segmentationNode: object = None
    segmentId: str | None = None
    sliceIndex: int | None = None
    axis: str = "sagittal"
    propagate: bool = False
    sliceNode: object = None
    sequenceBrowserNode: object = None
    minScore: float = 0.5

    def __post_init__(self) -> None:
        require_node(self.volumeNode, "volumeNode", "vtkMRMLScalarVolumeNode", optional=False)
        if self.volumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
            raise TypeError(f"volumeNode must be an image volume, got the labelmap {self.volumeNode.GetName()!r}")
        require_node(self.positivePointsNode, "positivePointsNode", "vtkMRMLMarkupsFiducialNode")
        require_node(self.negativePointsNode, "negativePointsNode", "vtkMRMLMarkupsFiducialNode")
        require_node(self.roiNode, "roiNode", "vtkMRMLMarkupsROINode")
        require_node(self.segmentationNode, "segmentationNode", "vtkMRMLSegmentationNode")
        require_node(self.sliceNode, "sliceNode", "vtkMRMLSliceNode")
        require_node(self.sequenceBrowserNode, "sequenceBrowserNode", "vtkMRMLSequenceBrowserNode")
        if self.segmentId is not None and not isinstance(self.segmentId, str):
            raise TypeError(f"segmentId must be a segment ID (str), got {_describe(self.segmentId)}")
        if not isinstance(self.axis, str):
            raise TypeError(f"axis must be 'sagittal', 'coronal' or 'axial', got {_describe(self.axis)}")
        object.__setattr__(self, "segmentId", self.segmentId or None)
        object.__setattr__(
            self, "sliceIndex", None if self.sliceIndex is None else require_index(self.sliceIndex, "sliceIndex")
        )
        object.__setattr__(self, "axis", check_axis(self.axis))
        object.__setattr__(self, "propagate", _require_bool(self.propagate, "propagate"))
        object.__setattr__(self, "minScore", _require_fraction(self.minScore, "minScore"))

    @classmethod
    def fromParameters(cls, parameters, propagate: bool = False, sliceNode=None) -> "SegmentInputs":
        """The inputs the module's GUI describes: its parameter node's fields (``inputVolume``,
        ``positivePoints``, ``negativePoints``, ``roi``, ``segmentation``, ``segmentId``, ``minScore``)."""
        return cls(
            volumeNode=parameters.inputVolume,
            positivePointsNode=parameters.positivePoints,
            negativePointsNode=parameters.negativePoints,
            roiNode=parameters.roi,
            segmentationNode=parameters.segmentation,
            segmentId=parameters.segmentId or None,
            propagate=propagate,
            sliceNode=sliceNode,
            minScore=float(parameters.minScore),
        )


def as_inputs(args: tuple, kwargs: dict) -> SegmentInputs:
    """A :class:`SegmentInputs` given as one, or as its fields (positional and keyword)."""
    if len(args) == 1 and not kwargs and isinstance(args[0], SegmentInputs):
        return args[0]
    return SegmentInputs(*args, **kwargs)
