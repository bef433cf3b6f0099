"""SlicerUltraSamLogic: markup prompts in, segments out — the same code in Slicer and headless.

No Qt and no ``slicer.util`` globals: every node is reached through the nodes passed in (and their
own scene), so the logic runs in the Slicer application, in its Python console, and in tests on
the ``slicer-core`` wheel. Torch is imported only when a model is needed, so the module loads (and
can offer to install its dependencies) where torch is missing.

One segmentation run has three steps, which the widget spreads over threads and the console API
runs in a row (:meth:`SlicerUltraSamLogic.segment`):

1. :meth:`~SlicerUltraSamLogic.buildRequest` (GUI thread) reads the scene: the frames, the working
   slice, the prompts in pixel space, the output nodes;
2. :meth:`~SlicerUltraSamLogic.run` computes masks with the library (any thread; embeddings come
   from the shared store, so a new click only runs the decoder);
3. :meth:`~SlicerUltraSamLogic.apply` (GUI thread) writes the masks slice by slice and records how
   to undo it.

Public method and argument names follow Slicer's camelCase; helpers are PEP 8.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ultrasam.errors import PromptError, UltraSamError, WeightsError
from ultrasam.prompts import FramePrompts, prompts_from_markups

from .frame_source import FrameSource, SequenceFrames, VolumeFrames
from .geometry import (
    WorkingSlice,
    ijk_shape,
    ijk_to_ras_matrix,
    matrix_to_numpy,
    slice_axis_of_single_slice,
    working_slice_from_view,
)
from .history import EditHistory, Operation, PackedMask
from .nodes import markups_from_nodes
from .segment_writer import SegmentWriter, add_segment, create_segmentation_node
from .sequences import CineOutput, find_browser

log = logging.getLogger("SlicerUltraSam")

__all__ = ["SlicerUltraSamLogic", "SegmentRequest", "SegmentOutcome", "resolve_device", "DEFAULT_WEIGHTS"]

DEFAULT_WEIGHTS = "litemedsam"
NEIGHBOUR_RADIUS = 2


def resolve_device(device: str | None) -> str:
    """``"auto"``/None → CUDA when available, else CPU; an unavailable GPU is a clear error."""
    import torch

    name = (device or "auto").strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UltraSamError(
                f"device {device!r} was requested but this torch build sees no CUDA GPU "
                f"(torch {torch.__version__}); choose 'cpu', or install a CUDA build of torch (see the README)"
            )
        if ":" in name and int(name.split(":")[1]) >= torch.cuda.device_count():
            raise UltraSamError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) are present")
        return name
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UltraSamError("device 'mps' was requested but Apple Metal is not available; choose 'cpu'")
        return name
    if name == "cpu":
        return name
    raise UltraSamError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")


@dataclass
class SegmentRequest:
    """Everything one run needs, read from the scene (see the module docstring)."""

    volume_node: object
    frames: FrameSource
    axis: str
    index: int  # working slice (3D) or frame (cine); 0 for a single 2D frame
    prompts: dict
    propagate: bool
    frame_range: tuple[int, int]
    min_score: float
    segmentation_node: object | None
    segment_id: str | None
    browser: object | None = None
    master_sequence: object | None = None

    @property
    def is_cine(self) -> bool:
        return self.browser is not None


@dataclass
class SegmentOutcome:
    """Masks by frame (``ultrasam.propagate.SliceResult``) and whether the user stopped the run."""

    results: dict = field(default_factory=dict)
    cancelled: bool = False

    @property
    def scores(self) -> dict[int, float]:
        return {n: r.score for n, r in self.results.items()}


class SlicerUltraSamLogic:
    """Segment ultrasound frames and volume slices from markups; see :meth:`segment`.

    ``model``: a loaded ``ultrasam.models.SamModel`` (or give ``predictor``, whose model is used);
    otherwise ``checkpoint`` (a file) or ``weightsName`` (a registered name, default LiteMedSAM) is
    loaded on first use onto ``device`` (``auto``, ``cpu``, ``cuda[:N]``, ``mps``). With
    ``allowDownload=False`` missing weights are an error instead of a download (the widget asks
    the user first).
    """

    def __init__(
        self,
        model=None,
        checkpoint=None,
        device: str = "cpu",
        weightsName: str | None = None,
        predictor=None,
        allowDownload: bool = True,
        cacheSize: int = 48,
        historyLimit: int = 30,
    ) -> None:
        if model is None and predictor is not None:
            model = predictor.model
        self._model = model
        self._checkpoint = checkpoint
        self._device = device
        self._weights_name = weightsName or DEFAULT_WEIGHTS
        self.allowDownload = allowDownload
        self._cache_size = cacheSize
        self._store = None
        self._predictor = None
        self.history = EditHistory(historyLimit)
        self.lastOutcome: SegmentOutcome | None = None
        self.lastSegmentationNode = None
        self.lastSegmentId: str | None = None

    # ================================================================== model
    @staticmethod
    def availableWeights() -> list[str]:
        """Registered weights names (``ultrasam weights list``)."""
        from ultrasam import weights

        return [entry.name for entry in weights.list_weights()]

    @staticmethod
    def availableDevices() -> list[str]:
        """``auto`` and ``cpu`` plus each CUDA device (and ``mps``) this torch build can use."""
        devices = ["auto", "cpu"]
        try:
            import torch
        except ImportError:
            return devices
        if torch.cuda.is_available():
            devices += [f"cuda:{n}" for n in range(torch.cuda.device_count())]
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            devices.append("mps")
        return devices

    def setModel(self, weightsName: str | None = None, checkpoint=None, device: str | None = None, model=None) -> None:
        """Choose another model or device; it is loaded on next use. Drops cached embeddings."""
        self._weights_name = weightsName or self._weights_name
        self._checkpoint = checkpoint
        self._device = device or self._device
        self._model = model
        self._predictor = None
        if self._store is not None:
            self._store.clear()

    def weightsToDownload(self):
        """The registry entry that loading the model would download, or None (cached, file or loaded)."""
        if self._model is not None or self._checkpoint is not None:
            return None
        from ultrasam import weights

        return None if weights.is_cached(self._weights_name) else weights.get_entry(self._weights_name)

    @property
    def isModelLoaded(self) -> bool:
        return self._model is not None

    @property
    def model(self):
        """The model, loaded on first use."""
        if self._model is None:
            self._model = self._load_model()
        return self._model

    @property
    def deviceInUse(self) -> str | None:
        """Where the loaded model runs (``cpu``, ``cuda:0``...), or None before loading."""
        return None if self._model is None else str(self._model.device)

    @property
    def modelDescription(self) -> str:
        if self._model is None:
            return self._checkpoint and str(self._checkpoint) or self._weights_name
        return f"{self._model.spec.family} ({self._model.spec.image_size} px)"

    def _load_model(self):
        from ultrasam import weights
        from ultrasam.models import load_model

        device = resolve_device(self._device)
        if self._checkpoint is not None:
            log.info("loading %s on %s", self._checkpoint, device)
            return load_model(self._checkpoint, device=device)
        entry = weights.get_entry(self._weights_name)
        if not self.allowDownload and not weights.is_cached(entry.name):
            raise WeightsError(
                f"the {entry.name!r} weights are not downloaded yet ({weights.path(entry.name)}); "
                "download them (the module asks first) or choose a checkpoint file"
            )
        path = weights.fetch(entry.name)
        log.info("loading %s weights from %s on %s", entry.name, path, device)
        return load_model(path, family=entry.family, device=device)

    @property
    def store(self):
        if self._store is None:
            from .embeddings import EmbeddingStore

            self._store = EmbeddingStore(self._cache_size)
        return self._store

    @property
    def predictor(self):
        """The predictor for prompts and propagation (reads and fills the embedding store)."""
        if self._predictor is None:
            from .embeddings import StorePredictor

            self._predictor = StorePredictor(self.model, self.store)
        return self._predictor

    # ================================================================== frames and working slice
    def frameSource(self, volumeNode, axis: str = "sagittal", sequenceBrowserNode=None, snapshot: bool = False) -> FrameSource:
        """The frames the model sees: a cine's items, a 2D frame, or slices of a 3D volume along ``axis``."""
        browser, sequence = find_browser(volumeNode, sequenceBrowserNode)
        if browser is not None:
            return SequenceFrames(sequence, volumeNode, snapshot=snapshot)
        single = slice_axis_of_single_slice(_shape_kji(volumeNode))
        return VolumeFrames(volumeNode, single or axis, snapshot=snapshot)

    def workingSlice(self, volumeNode, sliceNode=None, sliceIndex: int | None = None, axis: str = "sagittal") -> WorkingSlice | None:
        """The slice prompts apply to, or None when it must come from the prompts.

        2D frames: the frame. Cine: the browser's current item. 3D: ``sliceIndex`` along ``axis``
        when given, else the slice the view ``sliceNode`` shows (from its SliceToRAS), else None.
        """
        browser, _ = find_browser(volumeNode)
        if browser is not None:
            return WorkingSlice("axial", int(browser.GetSelectedItemNumber()))
        single = slice_axis_of_single_slice(_shape_kji(volumeNode))
        if single is not None:
            return WorkingSlice(single, 0)
        if sliceIndex is not None:
            return WorkingSlice(axis, int(sliceIndex))
        if sliceNode is not None:
            working = working_slice_from_view(volumeNode, matrix_to_numpy(sliceNode.GetSliceToRAS()))
            if working.alignment < 0.99:
                log.info("view %s is oblique to the voxel grid; using the nearest %s slice %d", sliceNode.GetName(), working.axis, working.index)
            return working
        return None

    def framePrompts(self, volumeNode, frames: FrameSource, positivePointsNode=None, negativePointsNode=None, roiNode=None) -> dict:
        """Every prompt as ``{frame index: ultrasam.prompts.FramePrompts}`` in voxel-grid pixels.

        The library's ``prompts_from_markups`` does the conversion (the one the command line uses);
        for a cine the prompts sit on the frame on screen (the proxy), i.e. the browser's current item.
        """
        markups = markups_from_nodes(volumeNode, positivePointsNode, negativePointsNode, roiNode)
        if isinstance(frames, SequenceFrames):
            on_proxy = prompts_from_markups(VolumeFrames(volumeNode, "axial").stack, markups)
            current = self.workingSlice(volumeNode).index
            return {current: _reindexed(prompt, current) for prompt in on_proxy.values()}
        return prompts_from_markups(frames.stack, markups)

    # ================================================================== the three steps
    def buildRequest(
        self,
        volumeNode,
        positivePointsNode=None,
        negativePointsNode=None,
        roiNode=None,
        segmentationNode=None,
        segmentId: str | None = None,
        sliceIndex: int | None = None,
        axis: str = "sagittal",
        propagate: bool = False,
        sliceNode=None,
        sequenceBrowserNode=None,
        minScore: float = 0.5,
        snapshot: bool = False,
    ) -> SegmentRequest:
        """Step 1: read prompts and frames from the scene (see :meth:`segment` for the arguments)."""
        if volumeNode is None or volumeNode.GetImageData() is None:
            raise UltraSamError("choose an input volume with voxels")
        if positivePointsNode is None and negativePointsNode is None and roiNode is None:
            raise PromptError("give a prompt: a positive point list or an ROI")
        browser, sequence = find_browser(volumeNode, sequenceBrowserNode)
        frames = self.frameSource(volumeNode, axis, sequenceBrowserNode, snapshot=snapshot)
        every = self.framePrompts(volumeNode, frames, positivePointsNode, negativePointsNode, roiNode)
        working = self.workingSlice(volumeNode, sliceNode, sliceIndex, frames.axis)
        if working is None:
            working = WorkingSlice(frames.axis, _default_frame(every, frames.axis))
        if not 0 <= working.index < frames.num_frames:
            raise PromptError(f"{working.axis} slice {working.index} is outside 0..{frames.num_frames - 1}")
        prompts = _select(every, working.index, propagate, "frame" if browser is not None else f"{frames.axis} slice")
        frame_range = (0, frames.num_frames - 1)
        if propagate and browser is None and roiNode is not None:
            boxed = [n for n, p in every.items() if p.box is not None]
            if len(boxed) > 1:  # an ROI across several slices bounds the sweep
                frame_range = (min(boxed + list(prompts)), max(boxed + list(prompts)))
        if propagate and frames.num_frames == 1:
            raise UltraSamError(f"{volumeNode.GetName()!r} is a single frame: there is nothing to propagate to")
        return SegmentRequest(
            volume_node=volumeNode,
            frames=frames,
            axis=frames.axis,
            index=working.index,
            prompts=prompts,
            propagate=propagate,
            frame_range=frame_range,
            min_score=minScore,
            segmentation_node=segmentationNode,
            segment_id=segmentId or None,
            browser=browser,
            master_sequence=sequence,
        )

    def missingEmbeddings(self, request: SegmentRequest) -> list[int]:
        """Prompted frames whose embedding is not computed yet (decoding them would encode first)."""
        return [n for n in sorted(request.prompts) if (request.frames.frame_key(n), None) not in self.store]

    def run(
        self,
        request: SegmentRequest,
        shouldStop: Callable[[], bool] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> SegmentOutcome:
        """Step 2: masks for the prompted frames and, with propagation, their neighbours.

        Runs ``ultrasam.pipeline.segment``, the command line's code path (square-pixel resampling,
        propagation). Touches no MRML node, so it may run on a worker thread when the request was
        built with ``snapshot=True``. ``progress(done, total)`` is called as frames are reached.
        """
        from ultrasam import pipeline

        frames = request.frames
        first, last = request.frame_range
        total = len(request.prompts) if not request.propagate else last - first + 1
        seen: set[int] = set()

        def reached(index: int) -> None:
            if index not in seen:
                seen.add(index)
                if progress is not None:
                    progress(min(len(seen), total), total)

        frames.on_frame = reached
        try:
            results = pipeline.segment(
                frames,
                request.prompts,
                self.predictor,
                propagate=request.propagate,
                frame_range=request.frame_range,
                min_score=request.min_score,
                key=frames.key,
                progress=False,
                should_stop=shouldStop,
            )
        except RuntimeError as exc:  # torch: out of memory, device errors
            if "out of memory" in str(exc).lower():
                raise UltraSamError(f"the GPU ran out of memory ({exc}); choose the cpu device or a smaller model") from exc
            raise
        finally:
            frames.on_frame = None
        cancelled = bool(shouldStop is not None and shouldStop())
        return SegmentOutcome(results=dict(results), cancelled=cancelled)

    def apply(self, request: SegmentRequest, outcome: SegmentOutcome, description: str | None = None) -> np.ndarray:
        """Step 3: write every mask into its slice of the segment; one undoable operation.

        Returns the masks on the volume's voxel array: bool ``[k, j, i]`` (the volume's array shape
        without a colour axis) for a 2D frame or 3D volume; ``[frame, row, col]`` over all frames
        for a cine. Written slices hold the new masks; every other slice is False.
        """
        operation = Operation(description or self._describe(request, outcome))
        segmentation_node, segment_id = self._ensure_output(request, operation)
        try:
            if request.is_cine:
                result = self._apply_cine(request, outcome, segmentation_node, segment_id, operation)
            else:
                result = self._apply_volume(request, outcome, segmentation_node, segment_id, operation)
        except Exception:
            operation.revert()  # leave the scene as it was, never half-written
            raise
        self.history.push(operation)
        self.lastOutcome = outcome
        self.lastSegmentationNode = segmentation_node
        self.lastSegmentId = segment_id
        return result

    # ================================================================== console API
    def segment(
        self,
        volumeNode,
        positivePointsNode=None,
        negativePointsNode=None,
        roiNode=None,
        segmentationNode=None,
        segmentId: str | None = None,
        sliceIndex: int | None = None,
        axis: str = "sagittal",
        propagate: bool = False,
        sliceNode=None,
        sequenceBrowserNode=None,
        minScore: float = 0.5,
        shouldStop: Callable[[], bool] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Segment from markups and write the result into a segment; returns the written masks.

        * ``volumeNode``: scalar or RGB (vector) volume — a 2D frame (single-slice volume), the
          proxy of a cine Sequence browser, or a 3D volume.
        * prompts: ``positivePointsNode`` / ``negativePointsNode`` point lists (a point in the
          positive list is negative when its label starts with "-" or its description says
          "negative"); ``roiNode`` a box (an ROI drawn on a slice view is flat and belongs to that
          slice; a 3D ROI gives its box on every slice it crosses). Positions are converted to
          pixels by ``ultrasam.prompts``, as on the command line: a point belongs to the slice
          whose slab holds it; any point off the volume or off its slice's image is an error.
          Only prompts on the working slice are used, unless ``propagate``.
        * working slice: a 2D frame itself; a cine's current frame; for 3D, ``sliceIndex`` along
          ``axis`` (``"sagittal"`` = constant i, ``"coronal"``, ``"axial"``), else the slice shown in
          ``sliceNode``, else the slice with most positive points (else the ROI's middle slice).
        * output: ``segmentationNode`` (created on the volume's grid, under its transform, when
          None) and ``segmentId`` (a new "UltraSam N" segment with a distinct colour when None).
          Only the written slices of that segment change.
        * ``propagate``: every slice with a positive prompt is segmented and the masks are carried
          slice by slice (3D) or frame by frame (cine) until a mask vanishes or its predicted IoU
          drops below ``minScore``; a 3D ROI keeps the sweep within the slices it crosses.

        Returns bool ``[k, j, i]`` (the volume's array shape) for 2D/3D, ``[frame, row, col]`` for a
        cine: the new masks on the written slices, False elsewhere. Details (scores per slice)
        are in :attr:`lastOutcome`; the segment used in :attr:`lastSegmentId`.
        """
        request = self.buildRequest(
            volumeNode, positivePointsNode, negativePointsNode, roiNode, segmentationNode, segmentId,
            sliceIndex, axis, propagate, sliceNode, sequenceBrowserNode, minScore,
        )
        outcome = self.run(request, shouldStop=shouldStop, progress=progress)
        return self.apply(request, outcome)

    def precompute(
        self,
        volumeNode,
        axis: str = "sagittal",
        sliceIndices=None,
        sequenceBrowserNode=None,
        shouldStop: Callable[[], bool] | None = None,
    ) -> int:
        """Compute embeddings ahead of the prompts; returns how many frames were encoded.

        ``sliceIndices`` defaults to every frame along ``axis`` (a cine: every item). The widget
        calls :meth:`encodingJobs` on the GUI thread and :meth:`encode` on a worker thread instead.
        """
        frames = self.frameSource(volumeNode, axis, sequenceBrowserNode)
        indices = range(frames.num_frames) if sliceIndices is None else sliceIndices
        return self.encode(self.encodingJobs(frames, indices), shouldStop)

    def encodingJobs(self, frames: FrameSource, indices, copy: bool = True) -> list:
        """``(key, image_fn)`` for each frame in ``indices`` whose embedding is missing.

        With ``copy`` the pixels are copied now (GUI thread), so :meth:`encode` may run anywhere.
        """
        jobs = []
        for index in indices:
            if not 0 <= index < frames.num_frames:
                continue
            key = frames.frame_key(index)
            if (key, None) in self.store:
                continue
            if copy:
                image = np.array(frames.model_image(index))
                jobs.append((key, lambda image=image: image))
            else:
                jobs.append((key, lambda index=index: frames.model_image(index)))
        return jobs

    def encode(self, jobs, shouldStop: Callable[[], bool] | None = None) -> int:
        """Encode the jobs of :meth:`encodingJobs` into the embedding store (thread-safe)."""
        from .embeddings import encode_into

        return encode_into(self.store, self.model, jobs, shouldStop)

    @staticmethod
    def neighbourIndices(index: int, count: int, radius: int = NEIGHBOUR_RADIUS) -> list[int]:
        """``index`` then its neighbours nearest first (``index±1``, ``index±2``...), inside ``0..count-1``."""
        order = [index]
        for step in range(1, radius + 1):
            order += [index - step, index + step]
        return [n for n in order if 0 <= n < count]

    # ================================================================== undo
    @property
    def canUndo(self) -> bool:
        return self.history.can_undo

    def undo(self) -> str | None:
        """Put back what the last operation changed (exactly); returns its description."""
        description = self.history.undo()
        if description is not None:
            log.info("undid: %s", description)
        return description

    # ================================================================== writing
    def _ensure_output(self, request: SegmentRequest, operation: Operation):
        volume = request.volume_node
        segmentation_node = request.segmentation_node
        if segmentation_node is None:
            scene = volume.GetScene()
            if scene is None:
                raise UltraSamError(f"volume {volume.GetName()!r} is not in a scene")
            segmentation_node = create_segmentation_node(scene, volume)
            operation.on_undo(lambda node=segmentation_node: scene.RemoveNode(node))
        SegmentWriter.for_volume(segmentation_node, volume)  # checks transform and grid before anything is written
        segment_id = request.segment_id
        if segment_id is None:
            segment_id = add_segment(segmentation_node)
            # Look the segmentation up at undo time: a Sequence browser may have replaced it since.
            operation.on_undo(lambda: segmentation_node.GetSegmentation().RemoveSegment(segment_id))
        elif segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
            ids = list(segmentation_node.GetSegmentation().GetSegmentIDs())
            raise UltraSamError(f"segment {segment_id!r} is not in segmentation {segmentation_node.GetName()!r} (it has {ids})")
        return segmentation_node, segment_id

    @staticmethod
    def _write(writer: SegmentWriter, segment_id: str, axis: str, index: int, mask: np.ndarray, operation: Operation, still_valid=None) -> None:
        """Write one slice and record how to put its previous content back (unless ``still_valid()`` says no)."""
        previous = writer.read_slice(segment_id, axis, index)
        if np.array_equal(previous, mask):
            return
        writer.write_slice(segment_id, axis, index, mask)
        packed = PackedMask.pack(previous)

        def restore() -> None:
            if (still_valid is None or still_valid()) and writer.node.GetSegmentation().GetSegment(segment_id) is not None:
                writer.write_slice(segment_id, axis, index, packed.unpack())

        operation.on_undo(restore)

    def _apply_volume(self, request, outcome, segmentation_node, segment_id, operation) -> np.ndarray:
        writer = SegmentWriter.for_volume(segmentation_node, request.volume_node)
        written = np.zeros(writer.shape_kji, dtype=bool)
        for index, result in sorted(outcome.results.items()):
            self._write(writer, segment_id, request.axis, index, result.mask, operation)
            _place(written, request.axis, index, result.mask)
        return written

    def _apply_cine(self, request, outcome, segmentation_node, segment_id, operation) -> np.ndarray:
        proxy_volume = request.volume_node
        proxy_writer = SegmentWriter.for_volume(segmentation_node, proxy_volume)
        ijk_to_ras = ijk_to_ras_matrix(proxy_volume)
        output = CineOutput(request.browser, request.master_sequence, segmentation_node)
        height, width = request.frames.frame_shape
        written = np.zeros((request.frames.num_frames, height, width), dtype=bool)
        only_current = not request.propagate and output.sequence is None
        for index, result in sorted(outcome.results.items()):
            if only_current:  # a single frame and no per-frame storage yet: the proxy is the output
                nodes = [segmentation_node]
            else:
                nodes = output.nodes_for(index, segment_id, operation)
            for node in nodes:
                if node is segmentation_node:
                    # The proxy shows frame ``index`` only while the browser stays there; once it has
                    # moved on, the proxy holds another frame and the restored item is what counts.
                    on_screen = lambda index=index: only_current or output.current_index == index  # noqa: E731
                    self._write(proxy_writer, segment_id, "axial", 0, result.mask, operation, on_screen)
                else:
                    item_writer = SegmentWriter(node, ijk_to_ras, proxy_writer.shape_kji)
                    self._write(item_writer, segment_id, "axial", 0, result.mask, operation)
            written[index] = result.mask
        return written

    @staticmethod
    def _describe(request: SegmentRequest, outcome: SegmentOutcome) -> str:
        count = len(outcome.results)
        where = "frame" if request.is_cine else f"{request.axis} slice"
        if count == 1:
            (index,) = outcome.results
            return f"segment {where} {index}"
        return f"propagate from {where} {request.index} over {count} {'frames' if request.is_cine else 'slices'}"


def _reindexed(prompt: FramePrompts, index: int) -> FramePrompts:
    return FramePrompts(index, prompt.points, prompt.labels, prompt.box, prompt.names)


def _default_frame(prompts: dict, axis: str) -> int:
    """Where prompts apply when no slice is named: most positive points, else the ROI's middle slice."""
    positives = {n: int((p.labels == 1).sum()) for n, p in prompts.items()}
    best = max(positives.values(), default=0)
    if best > 0:
        return min(n for n, count in positives.items() if count == best)
    boxed = sorted(n for n, p in prompts.items() if p.box is not None)
    if not boxed:
        raise PromptError(f"only negative points were given: add a positive point or an ROI on the {axis} slice to segment")
    return boxed[len(boxed) // 2]


def _select(prompts: dict, working: int, propagate: bool, where: str) -> dict:
    """The working slice's prompts, plus (for propagation) every other slice with a positive prompt."""
    chosen = prompts.get(working)
    if chosen is None or not chosen.has_positive:
        kind = "only negative points" if chosen is not None else "no prompt"
        elsewhere = sorted(n for n, p in prompts.items() if p.has_positive)
        hint = f"; positive prompts lie on {where} {elsewhere}" if elsewhere else "; place a positive point or an ROI there"
        raise PromptError(f"{kind} on {where} {working}{hint}")
    selected = {working: chosen}
    if propagate:
        selected.update({n: p for n, p in prompts.items() if n != working and p.has_positive})
    else:
        ignored = sorted(set(prompts) - {working})
        if ignored:
            log.info("prompts on %s %s are not on the working one (%d) and were not used", where, ignored, working)
    return dict(sorted(selected.items()))


def _place(volume: np.ndarray, axis: str, index: int, mask: np.ndarray) -> None:
    if axis == "axial":
        volume[index] = mask
    elif axis == "coronal":
        volume[:, index] = mask
    else:
        volume[:, :, index] = mask


def _shape_kji(volume_node) -> tuple[int, int, int]:
    ni, nj, nk = ijk_shape(volume_node)
    return nk, nj, ni
