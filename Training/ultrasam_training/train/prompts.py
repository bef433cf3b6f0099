"""Prompt simulation from ground-truth masks, as the original UltraSam pipeline drew them (protocol §4).

Two coordinate conventions meet here:

* the **original's** frame coordinate: what its prompt encoder saw, a position in the resized
  model frame that *already includes* the +0.5 pixel-centre shift when the pipeline adds one
  (test centroids, test boxes, train boxes) and not when it does not (train points);
* **segment_anything's** input coordinate, to which its ``PromptEncoder`` adds +0.5 itself.

Every function that returns model-frame prompts returns the second form
(``original coordinate − 0.5``), so ``segment_anything`` sees exactly the value the original did.
Functions for the predictor (:func:`centroid_point`, :func:`inside_point`, :func:`gt_box`) return
original-image pixels, which the predictor scales the same way.

Training randomness comes from a ``numpy.random.Generator`` keyed by ``(seed, draw)``, where
``draw`` is the sample's global position in the training stream: a resumed run draws exactly the
prompts an uninterrupted one would, whatever the worker count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ultrasam.transforms import mask_to_box
from ultrasam_training.evaluation import prompts as _evaluation_prompts

#: ``kinds`` values.
POINT, BOX = 0, 1
#: segment_anything point labels: padding ("not a point"), positive point, box corners.
NOT_A_POINT, POSITIVE, CORNER_A, CORNER_B = -1, 1, 2, 3


def prompt_rng(seed: int, draw: int) -> np.random.Generator:
    """The generator of one training sample: a function of the run's seed and the sample's position."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(draw)])


@dataclass
class Prompts:
    """One prompt per instance in segment_anything's input convention (two sparse slots each).

    ``coords`` ``(N, 2, 2)`` model-frame ``(x, y)``; ``labels`` ``(N, 2)``: a point is
    ``[POSITIVE, NOT_A_POINT]`` (second slot at (0, 0), as the original padded it), a box is
    ``[CORNER_A, CORNER_B]``; ``kinds`` ``(N,)`` is ``POINT`` or ``BOX``.
    """

    coords: np.ndarray
    labels: np.ndarray
    kinds: np.ndarray

    def __len__(self) -> int:
        return len(self.kinds)


def _empty_prompts(count: int) -> Prompts:
    return Prompts(
        coords=np.zeros((count, 2, 2), np.float32),
        labels=np.full((count, 2), NOT_A_POINT, np.int64),
        kinds=np.zeros(count, np.int64),
    )


def jittered_box(box: np.ndarray, rng: np.random.Generator, max_jitter: float = 0.05) -> np.ndarray:
    """``[x0, y0, x1, y1]`` with each x corner moved by U(−j, j)·w and each y corner by U(−j, j)·h.

    Returns the original's coordinate *without* its +0.5, i.e. segment_anything's input.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    dx0, dx1, dy0, dy1 = rng.uniform(-max_jitter, max_jitter, size=4)
    return np.array([x0 + dx0 * w, y0 + dy0 * h, x1 + dx1 * w, y1 + dy1 * h])


def random_foreground_point(
    frame_mask: np.ndarray,
    rng: np.random.Generator,
    original_mask: np.ndarray | None = None,
    scale_xy: np.ndarray | None = None,
) -> np.ndarray:
    """One uniformly drawn foreground pixel of ``frame_mask`` plus U[0,1) sub-pixel jitter, minus 0.5.

    The original adds no +0.5 to training points, so segment_anything must get ``p − 0.5``.
    A mask that vanished in the nearest-neighbour resize (a tiny object shrunk) falls back to a
    pixel of ``original_mask`` with its jittered position scaled to the frame: the original
    crashed there (``np.random.choice(0)``).
    """
    rows, cols = np.nonzero(frame_mask)
    scale = np.ones(2)
    if not rows.size and original_mask is not None and scale_xy is not None:
        rows, cols = np.nonzero(original_mask)
        scale = np.asarray(scale_xy, np.float64)
    if not rows.size:
        raise ValueError("empty mask: no foreground pixel to draw a point from")
    pick = int(rng.integers(rows.size))
    jitter = rng.random(2)
    return (np.array([cols[pick], rows[pick]], np.float64) + jitter) * scale - 0.5


def sample_training_prompts(
    frame_masks: np.ndarray,
    frame_boxes: np.ndarray,
    rng: np.random.Generator,
    *,
    point_probability: float = 0.5,
    max_jitter: float = 0.05,
    original_masks: np.ndarray | None = None,
    scale_xy: np.ndarray | None = None,
) -> Prompts:
    """Per instance, independently: a random foreground point (probability ``point_probability``) or a jittered GT box.

    ``frame_masks`` ``(N, h, w)`` are the instance masks in the resized (and flipped) model frame;
    ``frame_boxes`` ``(N, 4)`` their GT boxes there (exclusive max corner, COCO ``x + w``).
    Per instance the generator is consumed in a fixed order: kind, then the point or box draws.
    """
    count = len(frame_boxes)
    prompts = _empty_prompts(count)
    for i in range(count):
        if rng.random() < point_probability:
            original = None if original_masks is None else original_masks[i]
            point = random_foreground_point(frame_masks[i], rng, original, scale_xy)
            prompts.coords[i, 0] = point
            prompts.labels[i] = (POSITIVE, NOT_A_POINT)
            prompts.kinds[i] = POINT
        else:
            box = jittered_box(frame_boxes[i], rng, max_jitter)
            prompts.coords[i] = box.reshape(2, 2)
            prompts.labels[i] = (CORNER_A, CORNER_B)
            prompts.kinds[i] = BOX
    return prompts


# ---------------------------------------------------------------------------------------------
# Test-time prompts: deterministic, in original-image pixels (what the predictor takes).


# The evaluation package defines the test points once for every front end.
centroid_point = _evaluation_prompts.centroid_point  # mean column / row; may fall outside a ring
inside_point = _evaluation_prompts.interior_point  # distance-transform maximum, always inside


def gt_box(mask: np.ndarray) -> np.ndarray:
    """COCO-style ``[x0, y0, x0 + w, y0 + h]`` box of a mask (exclusive max corner)."""
    box = mask_to_box(mask)
    if box is None:
        raise ValueError("empty mask has no box")
    return box


EVAL_PROMPTS = {"point": centroid_point, "inside": inside_point, "box": gt_box}


def evaluation_prompt(mask: np.ndarray, kind: str) -> np.ndarray:
    """The deterministic prompt ``kind`` (``point`` = centroid, ``inside``, ``box``) of one GT mask."""
    if kind not in EVAL_PROMPTS:
        raise ValueError(f"unknown prompt kind {kind!r}; choose from {sorted(EVAL_PROMPTS)}")
    return EVAL_PROMPTS[kind](mask)


def model_frame_eval_prompts(masks: np.ndarray, kind: str, scale_xy: np.ndarray) -> Prompts:
    """Test prompts of original-resolution ``masks`` in segment_anything's model-frame input.

    The original fed ``p·scale + 0.5`` to an encoder that adds nothing; segment_anything adds the
    0.5 itself, so it gets ``p·scale``.
    """
    prompts = _empty_prompts(len(masks))
    for i, mask in enumerate(masks):
        value = evaluation_prompt(mask, kind)
        if kind == "box":
            prompts.coords[i] = (value * np.tile(scale_xy, 2)).reshape(2, 2)
            prompts.labels[i] = (CORNER_A, CORNER_B)
            prompts.kinds[i] = BOX
        else:
            prompts.coords[i, 0] = value * scale_xy
            prompts.labels[i] = (POSITIVE, NOT_A_POINT)
            prompts.kinds[i] = POINT
    return prompts
