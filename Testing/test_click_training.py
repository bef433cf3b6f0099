"""Interactive click simulation in training: the evaluator's rule with seeded draws, clicks in the
error region and never in the padding, exact depth on cropped regions."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from ultrasam_training.evaluation.clicks import DRAW_DEPTH_FRACTION, _depth, next_click
from ultrasam_training.train.click_rounds import ClickSchedule, corrective_clicks, instance_generators, valid_regions
from ultrasam_training.train.prompts import NOT_A_POINT, POSITIVE


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**31 - 1), st.integers(0, 3))
def test_depth_on_the_cropped_region_equals_the_whole_image_transform(height, width, seed, grow):
    rng = np.random.default_rng(seed)
    region = ndimage.binary_dilation(rng.random((height, width)) < 0.05, iterations=grow) if grow else (
        rng.random((height, width)) < 0.3
    )
    expected = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    assert np.array_equal(_depth(region), expected)


def square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_seeded_clicks_fall_deep_inside_the_error_the_evaluator_would_click():
    truth = square(64, 10, 10, 30)
    prediction = square(64, 10, 10, 15)  # the lower part of the object is missed
    deterministic = next_click(prediction, truth)
    missed = truth & ~prediction
    depth = _depth(missed)
    drawn = {(c.x, c.y) for c in (next_click(prediction, truth, rng=np.random.default_rng(s)) for s in range(40))}
    assert deterministic.positive
    for x, y in drawn:
        assert missed[y, x] and depth[y, x] >= DRAW_DEPTH_FRACTION * depth.max()
    assert len(drawn) > 5  # varied, unlike the evaluator's single deepest pixel
    again = next_click(prediction, truth, rng=np.random.default_rng(3))
    assert (again.x, again.y) == (lambda c: (c.x, c.y))(next_click(prediction, truth, rng=np.random.default_rng(3)))


def test_corrective_clicks_label_the_error_and_avoid_the_padding():
    size = 32
    truth = np.zeros((2, size, size), np.float32)
    truth[0, 4:20, 4:20] = 1  # instance 0: nothing predicted -> positive click
    truth[1, 4:10, 4:10] = 1  # instance 1: a false positive blob in the padding and one inside the image
    logits = torch.full((2, 1, size, size), -5.0)
    logits[1, 0, 4:10, 4:10] = 5.0
    logits[1, 0, 20:32, 0:12] = 5.0  # rows 20.. are padding for instance 1 (valid height 16)
    logits[1, 0, 12:16, 0:4] = 5.0  # a small false positive inside the image
    valid = valid_regions([(size, size), (16, size)], [1, 1], size)
    clicked = np.zeros((2, size, size), bool)
    rngs = instance_generators([0], [7], [2])
    coords, labels = corrective_clicks(logits, torch.from_numpy(truth), valid, clicked, rngs, scale=4.0)
    assert labels.tolist() == [[POSITIVE], [0]]
    x, y = coords[1, 0].tolist()
    row, col = (y + 0.5) / 4 - 0.5, (x + 0.5) / 4 - 0.5
    assert 12 <= row < 16 and 0 <= col < 4  # the in-image false positive, not the larger one in the padding
    assert clicked.sum() == 2


def test_a_perfect_prediction_gets_no_click():
    truth = torch.zeros((1, 16, 16))
    truth[0, 2:8, 2:8] = 1
    logits = torch.where(truth[:, None] > 0, 5.0, -5.0)
    coords, labels = corrective_clicks(
        logits, truth, valid_regions([(16, 16)], [1], 16), np.zeros((1, 16, 16), bool), instance_generators([0], [0], [1]), 1.0
    )
    assert labels.tolist() == [[NOT_A_POINT]]


def test_click_count_per_batch_is_seeded_and_in_range():
    schedule = ClickSchedule(max_clicks=4)
    counts = [schedule.clicks_for_batch([0], [draw]) for draw in range(200)]
    assert set(counts) == {1, 2, 3, 4}
    assert counts == [schedule.clicks_for_batch([0], [draw]) for draw in range(200)]
