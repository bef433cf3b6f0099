"""Segment prompted slices (or cine frames), then carry each mask to its neighbours.

The next slice is prompted with the box of the previous slice's mask (grown by a margin, since
objects change size from slice to slice) and, optionally, its low-res logits as a mask prompt.
A sweep stops when the mask vanishes, the predicted IoU falls below ``min_score``, it leaves the
allowed range, or it reaches a slice the user prompted. Works for volumes and cine loops alike:
anything that can hand out frame ``k`` as a 2D array.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Hashable, Mapping

import numpy as np
from tqdm import tqdm

from ultrasam.errors import PromptError
from ultrasam.predictor import Predictor
from ultrasam.prompts import FramePrompts
from ultrasam.transforms import mask_to_box

log = logging.getLogger(__name__)

FrameSource = Callable[[int], np.ndarray]


@dataclass
class SliceResult:
    index: int
    mask: np.ndarray
    score: float
    logits: np.ndarray
    prompted: bool


def _segment(predictor: Predictor, image: np.ndarray, key: Hashable, prompt: FramePrompts, mask_input=None) -> tuple:
    predictor.set_image(image, key=key)
    prediction = predictor.predict(**prompt.predict_kwargs(), mask_input=mask_input)
    return prediction.mask, prediction.score, prediction.logits


def grow_box(box: np.ndarray, margin: float, shape: tuple[int, int]) -> np.ndarray:
    """``box`` enlarged by ``margin`` × its size on every side, clipped to the image."""
    x0, y0, x1, y1 = box
    dx, dy = margin * (x1 - x0), margin * (y1 - y0)
    height, width = shape
    return np.array([max(0.0, x0 - dx), max(0.0, y0 - dy), min(width, x1 + dx), min(height, y1 + dy)])


def propagate(
    predictor: Predictor,
    frame: FrameSource,
    num_frames: int,
    prompts: Mapping[int, FramePrompts],
    *,
    sweep: bool = True,
    frame_range: tuple[int, int] | None = None,
    min_score: float = 0.5,
    margin: float = 0.05,
    use_logits: bool = False,
    key: Hashable = "volume",
    progress: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> dict[int, SliceResult]:
    """Masks for every prompted frame and, with ``sweep``, for their neighbours.

    ``frame_range`` is inclusive ``(first, last)``; propagation never leaves it. Embeddings are
    cached under ``(key, index)``, so each frame is encoded at most once per predictor cache.
    ``should_stop`` is polled between frames (a GUI's cancel button).
    """
    first, last = frame_range if frame_range is not None else (0, num_frames - 1)
    if not (0 <= first <= last < num_frames):
        raise PromptError(f"frame range {first}..{last} is outside 0..{num_frames - 1}")
    if not prompts:
        raise PromptError("no prompted frame: give at least one point or box on some frame")
    outside = sorted(k for k in prompts if not first <= k <= last)
    if outside:
        raise PromptError(f"prompted frames {outside} lie outside the frame range {first}..{last}")
    results: dict[int, SliceResult] = {}
    bar = tqdm(total=len(prompts), desc="frames", unit="frame", disable=not progress)
    stopped = lambda: should_stop is not None and should_stop()  # noqa: E731
    for index in sorted(prompts):
        if stopped():
            break
        mask, score, logits = _segment(predictor, frame(index), (key, index), prompts[index])
        results[index] = SliceResult(index, mask, score, logits, prompted=True)
        bar.update()
    if sweep:
        for seed in sorted(prompts):
            if seed not in results:
                continue
            for step in (-1, 1):
                _sweep(predictor, frame, results, seed, step, (first, last), prompts, min_score, margin, use_logits, key, bar, stopped)
    bar.close()
    return dict(sorted(results.items()))


def _sweep(predictor, frame, results, seed, step, bounds, prompts, min_score, margin, use_logits, key, bar, stopped) -> None:
    previous = results[seed]
    index = seed + step
    # stop at prompted frames and at frames another seed's sweep already segmented
    while bounds[0] <= index <= bounds[1] and index not in results and not stopped():
        box = mask_to_box(previous.mask)
        if box is None:
            return
        prompt = FramePrompts(index, box=grow_box(box, margin, previous.mask.shape))
        mask_input = previous.logits[None] if use_logits else None
        mask, score, logits = _segment(predictor, frame(index), (key, index), prompt, mask_input)
        bar.total += 1
        bar.update()
        if not mask.any() or score < min_score:
            log.info("propagation from frame %d stops at %d (score %.2f, %d pixels)", seed, index, score, mask.sum())
            return
        previous = results[index] = SliceResult(index, mask, score, logits, prompted=False)
        index += step

