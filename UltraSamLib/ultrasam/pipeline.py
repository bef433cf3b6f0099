"""The headless main job as plain functions: load → prompts → segment (+ propagate) → save.

The same calls work from scripts, the CLI and the Slicer Python console::

    from ultrasam import pipeline
    stack = pipeline.load("volume.nrrd", axis="sagittal")
    prompts = pipeline.prompts(stack, markups=["lesion.mrk.json"], negative_markups=["bg.mrk.json"])
    results = pipeline.segment(stack, prompts, propagate=True)
    pipeline.save("lesion.seg.nrrd", stack, results, overlay="qc.png")

Frames with anisotropic pixels are resampled to square pixels for the model (it was trained on
square pixels) and the masks mapped back exactly onto the original grid.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Hashable, Iterable, Mapping

import numpy as np

from ultrasam.frames import Frame, FrameStack
from ultrasam.predictor import Predictor
from ultrasam.prompts import FramePrompts
from ultrasam.propagate import Carry, Propagation, ResultCallback, SliceResult, StopRule, model_family
from ultrasam.propagate import propagate as run_propagation


def load(path: str | Path, axis: str = "sagittal") -> FrameStack:
    """The frames of an image, DICOM, cine or volume; ``axis`` applies to 3D volumes (not to
    multi-frame DICOM, whose frames are time points; a 2D+t NRRD is read with ``axis="axial"``)."""
    from ultrasam.frames import frames_along
    from ultrasam.readers import load_stack

    stack = load_stack(path, axis="axial")
    if stack.volume.is_single_slice or _is_cine(path) or axis == "axial":
        return stack  # a 2D image or cine loop: its frames are the frames
    return frames_along(stack.volume, axis)


def _is_cine(path: str | Path) -> bool:
    """Multi-frame DICOM is a cine loop: its frames are the acquisition frames, not a volume."""
    from ultrasam.readers import sniff_format

    return Path(path).is_file() and sniff_format(path) == "dicom"


def prompts(
    stack: FrameStack,
    markups: Iterable[str | Path] = (),
    negative_markups: Iterable[str | Path] = (),
    pixel: Mapping[int, FramePrompts] | None = None,
) -> dict[int, FramePrompts]:
    """Markups files (physical, RAS or LPS as declared) and pixel prompts → ``{frame: FramePrompts}``."""
    from ultrasam.markups import read_prompt_files
    from ultrasam.prompts import prompts_from_markups

    markups, negative_markups = list(markups), list(negative_markups)
    out: dict[int, FramePrompts] = {}
    if markups or negative_markups:
        out = prompts_from_markups(stack, read_prompt_files(positive=markups, negative=negative_markups))
    for index, extra in (pixel or {}).items():
        out[index] = out[index].merged(extra) if index in out else extra
    return dict(sorted(out.items()))


def segment(
    stack: FrameStack,
    frame_prompts: Mapping[int, FramePrompts],
    predictor: Predictor | None = None,
    *,
    propagate: bool = False,
    frame_range: tuple[int, int] | None = None,
    min_score: float | None = None,
    stop_rule: StopRule | None = None,
    carry: Carry | None = None,
    margin_floor: float | None = None,
    use_logits: bool | None = None,
    key: Hashable | None = None,
    lookahead: int = 2,
    progress: bool = True,
    should_stop: Callable[[], bool] | None = None,
    on_result: ResultCallback | None = None,
    mask_inputs: Mapping[int, np.ndarray] | None = None,
) -> Propagation:
    """Masks on the prompted frames (and, with ``propagate``, wherever the object goes on around them),
    on the frames' own grids.

    Several prompted frames are keyframes and a frame with only negative clicks stops propagation
    (see :mod:`ultrasam.propagate`). ``stop_rule`` decides where the object ends and ``carry`` how
    each frame is prompted from the previous mask (both default to the ones chosen for the model's
    family: :meth:`StopRule.for_family`, :meth:`Carry.for_family`); ``min_score`` replaces the rule's
    predicted-IoU floor; ``margin_floor`` and ``use_logits`` replace those fields of the carry (see
    :func:`ultrasam.propagate.propagate`). Each frame is resampled to square
    pixels and encoded once per run; ``lookahead`` frames are encoded ahead on a worker thread
    (through a second predictor on ``predictor``'s embedding store, so they stay there for later
    prompts). ``should_stop`` is polled between frames.

    ``on_result(index, result)`` shows each frame as it is done: it is called in this thread as a
    frame's mask is decided, with the mask already on the frame's own grid, and again when keyframe
    fusion replaces it, so the last call for a frame carries the mask returned for it.

    ``mask_inputs``: a prompted frame's previous low-res logits (``result.logits`` of an earlier run
    on the same frame) fed back as the mask prompt, so a further click refines the last mask.
    """
    from ultrasam.prompts import check_on_frame

    if predictor is None:
        from ultrasam.models import open_model

        predictor = Predictor(open_model(), cache_size=64)
    square: dict[int, Frame] = {}

    def model_frame(index: int) -> Frame:
        if index not in square:
            square[index] = stack[index].square()
        return square[index]

    on_grid: dict[int, tuple[SliceResult, np.ndarray]] = {}  # masks mapped back for on_result, reused below

    def to_grid(index: int, result: SliceResult) -> np.ndarray:
        """``result``'s mask on frame ``index``'s own grid, mapped back once per result."""
        frame = model_frame(index)
        if frame.parent is None:
            return result.mask
        seen = on_grid.get(index)
        return seen[1] if seen is not None and seen[0] is result else frame.mask_to_parent(result.mask)

    def report(index: int, result: SliceResult) -> None:
        mask = to_grid(index, result)
        on_grid[index] = (result, mask)
        on_result(index, result if mask is result.mask else replace(result, mask=mask))

    checked = {n: check_on_frame(p, stack.frame_shape, where=f"{stack.axis} frame {n}") for n, p in frame_prompts.items()}
    mapped = {n: p.mapped(stack[n], model_frame(n)) if not stack[n].is_square else p for n, p in checked.items()}
    results = run_propagation(
        predictor,
        lambda n: model_frame(n).image,
        len(stack),
        mapped,
        sweep=propagate,
        frame_range=frame_range,
        stop_rule=(stop_rule or StopRule.for_family(model_family(predictor))).with_min_score(min_score),
        carry=carry,
        margin_floor=margin_floor,
        use_logits=use_logits,
        key=key if key is not None else (str(getattr(stack.volume, "source", "")), stack.axis),
        lookahead=lookahead,
        progress=progress,
        should_stop=should_stop,
        on_result=report if on_result is not None else None,
        mask_inputs=mask_inputs,
    )
    for index, result in results.items():
        result.mask = to_grid(index, result)
    return results


def save(
    path: str | Path,
    stack: FrameStack,
    results: Mapping[int, SliceResult],
    *,
    overlay: str | Path | None = None,
    rle: str | Path | None = None,
    segment_name: str = "UltraSam 1",
    prompts: Mapping[int, FramePrompts] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the masks: ``.seg.nrrd`` / labelmap on the volume grid, or a PNG for a single frame.

    The files are one result: all are checked before anything is written, and if a later one
    fails, the earlier ones are removed (or restored, with ``overwrite``), never left half done.
    """
    from ultrasam import outputs
    from ultrasam.atomic import all_or_nothing

    outputs.check_writable({"mask": path, "overlay": overlay, "rle": rle}, overwrite=overwrite)
    path = Path(path)
    outputs.check_mask_suffix(path, one_frame=len(results) == 1)
    masks = {n: r.mask for n, r in results.items()}
    with all_or_nothing([path, overlay, rle]):
        _write_masks(path, stack, masks, overlay, segment_name, prompts, overwrite)
        if rle:
            scores = {n: r.score for n, r in results.items()}
            outputs.write_coco_rle(rle, masks, scores=scores, image_name=path.name, overwrite=overwrite)
    return path


def _write_masks(path: Path, stack: FrameStack, masks: Mapping[int, np.ndarray], overlay, segment_name: str,
                 prompts: Mapping[int, FramePrompts] | None, overwrite: bool) -> None:
    """The mask file and its QC picture: an overlay for one PNG frame, a montage otherwise."""
    from ultrasam import outputs

    if path.suffix.lower() == ".png":
        (index, mask), = masks.items()
        outputs.write_mask_png(path, mask, overwrite=overwrite)
        if overlay:
            outputs.write_overlay_png(overlay, stack[index].image, mask, (prompts or {}).get(index), overwrite=overwrite)
    else:
        outputs.write_frame_masks(path, stack, masks, overwrite=overwrite, name=segment_name)
        if overlay:
            outputs.write_montage_png(overlay, stack, masks, prompts, overwrite=overwrite, prompted=sorted(prompts or ()))


__all__ = ["load", "prompts", "segment", "save"]
