"""Interactive click simulation during training, as SAM and RITM train (issue: UltraSam-Lite v2).

After the initial prompt (the UltraSam 50/50 point or jittered box), each instance receives
``k`` corrective clicks, one per round: the next click comes from the error region of the previous
prediction — by the evaluator's own rule (:func:`ultrasam_training.evaluation.clicks.next_click`),
drawn with a seeded generator — and the previous round's low-resolution logits are fed back as the
mask prompt, exactly what the evaluator and the predictor do at inference.

Rounds before the last run without gradients (RITM's iterative sampling); the loss is taken on the
initial round and on the final one. ``k`` is drawn once per batch, uniformly in
``1..max_clicks``. Every draw comes from a generator keyed by the run's seed and the sample's
position in the training stream (plus a salt the prompt sampler does not use), so a resumed run
simulates the same clicks as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ultrasam_training.evaluation.clicks import next_click
from ultrasam_training.train.prompts import NOT_A_POINT, POSITIVE

#: Salt of the click generators: independent of the prompt stream keyed by ``(seed, draw)``.
CLICK_SALT = 0xC11C
NEGATIVE = 0


@dataclass(frozen=True)
class ClickSchedule:
    """How many corrective clicks a training batch simulates."""

    max_clicks: int = 6

    def __post_init__(self) -> None:
        if self.max_clicks < 1:
            raise ValueError("max_clicks must be at least 1")

    def clicks_for_batch(self, seeds: list[int], draws: list[int]) -> int:
        """``k`` in ``1..max_clicks``, a function of the batch's first sample only."""
        rng = np.random.default_rng([int(seeds[0]) & 0xFFFFFFFF, int(draws[0]), CLICK_SALT, 0])
        return int(rng.integers(1, self.max_clicks + 1))


def instance_generators(seeds: list[int], draws: list[int], counts: list[int]) -> list[np.random.Generator]:
    """One click generator per instance, keyed by (seed, draw, instance index within its image)."""
    rngs = []
    for seed, draw, count in zip(seeds, draws, counts):
        rngs += [np.random.default_rng([int(seed) & 0xFFFFFFFF, int(draw), CLICK_SALT, 1 + i]) for i in range(count)]
    return rngs


def valid_regions(valid_hw: list[tuple[int, int]], counts: list[int], size: int) -> np.ndarray:
    """``(N, size, size)`` bool: the image's extent (not the padding) for each instance."""
    regions = []
    for (height, width), count in zip(valid_hw, counts):
        region = np.zeros((size, size), bool)
        region[: max(1, height), : max(1, width)] = True
        regions += [region] * count
    return np.stack(regions) if regions else np.zeros((0, size, size), bool)


def corrective_clicks(
    logits: Tensor,
    targets: Tensor,
    valid: np.ndarray,
    clicked: np.ndarray,
    rngs: list[np.random.Generator],
    scale: float,
) -> tuple[Tensor, Tensor]:
    """The next click of every instance: ``(N, 1, 2)`` segment_anything coordinates and ``(N, 1)`` labels.

    ``logits`` ``(N, 1, S, S)`` and ``targets`` ``(N, S, S)`` on the low-resolution grid; ``scale``
    = model input size / S maps a grid pixel to the model frame. ``clicked`` is updated in place.
    An instance with no error pixel left gets a padding slot ("not a point").
    """
    predictions = (logits[:, 0].detach() > 0).cpu().numpy()
    truths = targets.detach().cpu().numpy() > 0.5
    coords = np.zeros((len(predictions), 1, 2), np.float32)
    labels = np.full((len(predictions), 1), NOT_A_POINT, np.int64)
    for i, (prediction, truth) in enumerate(zip(predictions, truths)):
        click = next_click(prediction & valid[i], truth & valid[i], exclude=clicked[i] | ~valid[i], rng=rngs[i])
        if click is None:
            continue
        clicked[i, click.y, click.x] = True
        coords[i, 0] = ((click.x + 0.5) * scale - 0.5, (click.y + 0.5) * scale - 0.5)
        labels[i, 0] = POSITIVE if click.positive else NEGATIVE
    device = logits.device
    return torch.from_numpy(coords).to(device), torch.from_numpy(labels).to(device)
