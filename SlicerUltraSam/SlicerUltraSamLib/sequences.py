"""Cine loops: a Sequence browser whose proxy is a 2D frame, and one segmentation per frame.

Slicer shows a cine as a browser node that copies the selected item of each synchronized
sequence into a *proxy* node. To keep a mask per frame the output segmentation becomes the proxy
of a segmentation sequence with one item per frame (what TotalSegmentator does for Sequences), and
each frame's mask is written into that frame's item. The item of the frame on screen is also
written into the proxy itself, so the result is visible at once, with or without the application's
Sequences logic running.
"""

from __future__ import annotations

import slicer

from ultrasam.errors import UltraSamError

from .history import Operation
from .nodes import nodes_of_class

__all__ = ["find_browser", "CineOutput"]


def find_browser(volume_node, browser_node=None):
    """``(browser, master sequence)`` when ``volume_node`` is the proxy of a volume sequence, else ``(None, None)``.

    With ``browser_node`` given only that browser is considered (and it must hold the volume).
    """
    scene = volume_node.GetScene()
    candidates = (
        [browser_node]
        if browser_node is not None
        else (nodes_of_class(scene, "vtkMRMLSequenceBrowserNode") if scene else [])
    )
    for browser in candidates:
        sequence = browser.GetSequenceNode(volume_node)
        if sequence is not None and browser.GetProxyNode(sequence) is volume_node:
            return browser, sequence
    if browser_node is not None:
        raise UltraSamError(f"volume {volume_node.GetName()!r} is not a proxy of browser {browser_node.GetName()!r}")
    return None, None


def _empty_like(segmentation_node):
    """A segmentation with the same segments (IDs, names, colours) and geometry, all empty."""
    empty = slicer.vtkMRMLSegmentationNode()
    source = segmentation_node.GetSegmentation()
    target = empty.GetSegmentation()
    name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    target.SetConversionParameter(name, source.GetConversionParameter(name))
    for n in range(source.GetNumberOfSegments()):
        segment = source.GetNthSegment(n)
        target.AddEmptySegment(source.GetNthSegmentID(n), segment.GetName(), segment.GetColor())
    return empty


class CineOutput:
    """The segmentation sequence that stores one segmentation per frame of a cine loop."""

    def __init__(self, browser, master_sequence, proxy_segmentation) -> None:
        self.browser = browser
        self.master = master_sequence
        self.proxy = proxy_segmentation
        self.sequence = browser.GetSequenceNode(proxy_segmentation)

    @property
    def current_index(self) -> int:
        return int(self.browser.GetSelectedItemNumber())

    def ensure_sequence(self, operation: Operation):
        """The segmentation sequence, created (and synchronized with the browser) on first use.

        A new sequence gets an empty segmentation for every frame except the one on screen, which
        gets a copy of the proxy as it is now.
        """
        if self.sequence is not None:
            return self.sequence
        scene = self.browser.GetScene()
        sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{self.proxy.GetName()} sequence")
        sequence.SetIndexName(self.master.GetIndexName())
        sequence.SetIndexUnit(self.master.GetIndexUnit())
        sequence.SetIndexType(self.master.GetIndexType())
        empty = _empty_like(self.proxy)
        current = self.current_index
        for n in range(self.master.GetNumberOfDataNodes()):
            sequence.SetDataNodeAtValue(self.proxy if n == current else empty, self.master.GetNthIndexValue(n))
        self.browser.AddSynchronizedSequenceNodeID(sequence.GetID())
        # With the Sequences logic running (the application), synchronizing creates a proxy of its own,
        # which AddProxyNode then replaces by ours: remove it, or every first cine run leaves a stray node.
        stray = self.browser.GetProxyNode(sequence)
        self.browser.AddProxyNode(self.proxy, sequence, False)
        if stray is not None and stray is not self.proxy and stray.GetScene() is scene:
            scene.RemoveNode(stray)
        self.browser.SetSaveChanges(sequence, True)
        self.sequence = sequence

        def remove() -> None:
            self.browser.RemoveSynchronizedSequenceNode(sequence.GetID())
            scene.RemoveNode(sequence)
            self.sequence = None

        operation.on_undo(remove)
        return sequence

    def nodes_for(self, index: int, segment_id: str, operation: Operation) -> list:
        """The segmentation nodes frame ``index``'s mask goes into (its item, and the proxy on screen)."""
        sequence = self.ensure_sequence(operation)
        value = self.master.GetNthIndexValue(index)
        item = sequence.GetDataNodeAtValue(value)
        if item is None:
            item = sequence.SetDataNodeAtValue(_empty_like(self.proxy), value)
        nodes = [item]
        if index == self.current_index:
            nodes.append(self.proxy)
        for node in nodes:
            self._ensure_segment(node, segment_id, operation)
        return nodes

    def _ensure_segment(self, node, segment_id: str, operation: Operation) -> None:
        segmentation = node.GetSegmentation()
        if segmentation.GetSegment(segment_id) is not None:
            return
        template = self.proxy.GetSegmentation().GetSegment(segment_id)
        if template is None:
            raise UltraSamError(f"segment {segment_id!r} is not in segmentation {self.proxy.GetName()!r}")
        segmentation.AddEmptySegment(segment_id, template.GetName(), template.GetColor())
        operation.on_undo(lambda: node.GetSegmentation().RemoveSegment(segment_id))
