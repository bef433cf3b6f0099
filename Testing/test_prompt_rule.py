"""One prompt rule: the prompts layer (``FramePrompts``, ``check_on_frame``) and the predictor layer
(``Predictor.predict``) accept, refuse and clip the same prompts, never write to their inputs, and
name what they refuse.

Edge rule: a point is on a ``W x H`` image iff ``-0.5 <= x < W - 0.5`` and ``-0.5 <= y < H - 0.5``.
Box rule: at least one pixel wide and high, clipped to ``[0, W] x [0, H]``, refused when the clipped
part is under one pixel either way. Property tests run at the validator level (no model); one test
goes through ``Predictor.predict`` with the tiny checkpoint.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ultrasam import pipeline
from ultrasam.errors import PromptError
from ultrasam.frames import frames_along
from ultrasam.predictor import Predictor
from ultrasam.propagate import StopRule
from ultrasam.prompts import MAX_POINTS_PER_FRAME, FramePrompts, check_on_frame
from ultrasam.volume import Volume

FAST = settings(max_examples=200, deadline=None)


def outcome(call):
    """What a validator returns, or the PromptError it raises."""
    try:
        return call()
    except PromptError as exc:
        return exc


def prompts_layer(points=None, labels=None, box=None, hw=(20, 30)):
    return outcome(
        lambda: check_on_frame(FramePrompts(0, np.zeros((0, 2)) if points is None else points, labels, box), hw)
    )


def predictor_layer(points=None, labels=None, box=None, hw=(20, 30)):
    return outcome(lambda: Predictor._check_prompts(points, labels, box, hw))


def point_on_image(x: float, y: float, hw: tuple[int, int]) -> bool:
    """The edge rule, written out independently of the library."""
    height, width = hw
    return -0.5 <= x < width - 0.5 and -0.5 <= y < height - 0.5


# ---- strategies: coordinates at and around the edges ---------------------------------------------
sizes = st.tuples(st.integers(1, 50), st.integers(1, 50))


def near(*edges: float) -> st.SearchStrategy[float]:
    """Exactly an edge, one ulp-ish step (1e-9) either side, or anywhere within one pixel of it."""
    exact = [e + d for e in edges for d in (-1e-9, 0.0, 1e-9)]
    return st.one_of(st.sampled_from(exact), *(st.floats(e - 1.0, e + 1.0) for e in edges))


def point_coordinate(size: int) -> st.SearchStrategy[float]:
    return st.one_of(near(-0.5, size - 0.5), st.floats(-1.0, float(size)), st.sampled_from([-1.0, 0.0, float(size)]))


def box_edge(size: int) -> st.SearchStrategy[float]:
    return st.one_of(near(0.0, float(size), 1.0, size - 1.0), st.floats(-2.0, size + 2.0))


@st.composite
def point_sets(draw):
    hw = draw(sizes)
    count = draw(st.integers(1, 4))
    xs = [draw(point_coordinate(hw[1])) for _ in range(count)]
    ys = [draw(point_coordinate(hw[0])) for _ in range(count)]
    labels = np.array(draw(st.lists(st.integers(0, 1), min_size=count, max_size=count)), np.int64)
    return hw, np.column_stack([xs, ys]), labels


@st.composite
def boxes(draw):
    hw = draw(sizes)
    height, width = hw
    return hw, np.array([draw(box_edge(width)), draw(box_edge(height)), draw(box_edge(width)), draw(box_edge(height))])


# ---- points ------------------------------------------------------------------------------------------
@FAST
@given(point_sets())
def test_both_layers_apply_the_edge_rule_to_points(case):
    hw, points, labels = case
    copies = points.copy(), labels.copy()
    by_prompts = prompts_layer(points, labels, hw=hw)
    by_predictor = predictor_layer(points, labels, hw=hw)
    np.testing.assert_array_equal(points, copies[0])  # neither layer writes to the caller's arrays
    np.testing.assert_array_equal(labels, copies[1])
    on = [point_on_image(x, y, hw) for x, y in points]
    if all(on):
        assert isinstance(by_prompts, FramePrompts) and isinstance(by_predictor, tuple)
        np.testing.assert_array_equal(by_prompts.points, points)
        np.testing.assert_array_equal(by_predictor[0][0], points)
        np.testing.assert_array_equal(by_predictor[1][0], labels)
        pixels = np.floor(points + 0.5)  # the one pixel holding each point
        assert (pixels >= 0).all() and (pixels[:, 0] < hw[1]).all() and (pixels[:, 1] < hw[0]).all()
    else:
        first = on.index(False) + 1
        assert isinstance(by_prompts, PromptError) and isinstance(by_predictor, PromptError)
        assert f"point {first} " in str(by_prompts) and "on frame 0" in str(by_prompts)
        assert f"point {first} " in str(by_predictor)
        assert "outside the" in str(by_prompts) and "outside the" in str(by_predictor)


@pytest.mark.parametrize(
    "x, accepted",
    [(-0.5 - 1e-9, False), (-0.5, True), (29.5 - 1e-9, True), (29.5, False), (29.5 + 1e-9, False)],
)
def test_edge_rule_is_half_open_in_both_layers(x, accepted):
    """On a 30-wide image x = 29.5 is the outer edge of column 29, where a column 30 would start: off."""
    for result in (prompts_layer([[x, 3.0]], [1]), predictor_layer([[x, 3.0]], [1])):
        assert isinstance(result, PromptError) != accepted, result


@FAST
@given(st.integers(1, 6), st.data())
def test_refusals_name_the_point_in_both_layers(count, data):
    """One bad point among good ones: both layers refuse it by its 1-based number."""
    bad = data.draw(st.integers(0, count - 1))
    kind = data.draw(st.sampled_from(["nan", "inf", "off", "label"]))
    points, labels = np.full((count, 2), 3.0), np.ones(count, np.int64)
    if kind == "label":
        labels[bad] = data.draw(st.sampled_from([2, -1]))
    else:
        points[bad, data.draw(st.integers(0, 1))] = {"nan": np.nan, "inf": -np.inf, "off": 40.0}[kind]
    for result in (prompts_layer(points, labels), predictor_layer(points, labels)):
        assert isinstance(result, PromptError)
        assert f"point {bad + 1} " in str(result)


@pytest.mark.parametrize(
    "points, labels, message",
    [
        ([[1.0, 2.0, 3.0]], [1], r"must be \(x, y\) pairs"),
        ([[1.0, 2.0], [3.0, 4.0]], [1], "does not match"),
        ([[1.0, 2.0]], [[1]], "does not match"),
        ([[1.0, 2.0]], [0.5], r"point 1 .*1 \(positive\) or 0"),
        ([["a", "b"]], [1], "must be numbers"),
    ],
)
def test_bad_shapes_and_labels_are_refused_by_both_layers(points, labels, message):
    for result in (prompts_layer(points, labels), predictor_layer(points, labels)):
        assert isinstance(result, PromptError) and re.search(message, str(result)), result


def test_point_cap_is_the_same_in_both_layers():
    many = np.zeros((MAX_POINTS_PER_FRAME + 1, 2))
    for result in (prompts_layer(many), predictor_layer(many)):
        assert isinstance(result, PromptError) and f"at most {MAX_POINTS_PER_FRAME} points" in str(result)
    assert not isinstance(prompts_layer(many[1:]), PromptError)
    assert not isinstance(predictor_layer(many[1:]), PromptError)


# ---- boxes -------------------------------------------------------------------------------------------
@FAST
@given(boxes())
def test_both_layers_clip_or_refuse_the_same_boxes(case):
    hw, box = case
    height, width = hw
    copy = box.copy()
    frame_prompts = outcome(lambda: FramePrompts(0, box=box))
    by_prompts = frame_prompts if isinstance(frame_prompts, PromptError) else prompts_layer(box=box, hw=hw)
    by_predictor = predictor_layer(box=box, hw=hw)
    np.testing.assert_array_equal(box, copy)
    x0, y0, x1, y1 = box
    clipped = np.array([max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)])
    usable = x1 - x0 >= 1 and y1 - y0 >= 1 and clipped[2] - clipped[0] >= 1 and clipped[3] - clipped[1] >= 1
    if usable:
        assert isinstance(by_prompts, FramePrompts) and isinstance(by_predictor, tuple)
        np.testing.assert_array_equal(by_prompts.box, clipped)
        np.testing.assert_array_equal(by_predictor[2], clipped[None])
        assert 0 <= clipped[0] < clipped[2] <= width and 0 <= clipped[1] < clipped[3] <= height
        if isinstance(frame_prompts, FramePrompts):  # the checked prompts are new; the given ones keep their box
            np.testing.assert_array_equal(frame_prompts.box, copy)
    else:
        assert isinstance(by_prompts, PromptError) and isinstance(by_predictor, PromptError)
        assert str(by_prompts).startswith("box [") and str(by_predictor).startswith("box [")


@FAST
@given(st.integers(2, 5), st.data())
def test_a_refused_box_of_a_batch_is_named_by_its_number(count, data):
    bad = data.draw(st.integers(0, count - 1))
    batch = np.tile([2.0, 2.0, 10.0, 10.0], (count, 1))
    batch[bad] = data.draw(st.sampled_from([[5, 5, 5.5, 10], [0, 0, np.nan, 4], [40, 2, 50, 8], [-9, 2, -1, 8]]))
    result = predictor_layer(box=batch)
    assert isinstance(result, PromptError) and str(result).startswith(f"box {bad + 1} [")


@pytest.mark.parametrize("box", [[1, 2, 3], [[1, 2, 3, 4, 5]], np.zeros((0, 4)), ["a", 1, 2, 3]])
def test_bad_box_shapes_are_refused_by_both_layers(box):
    assert isinstance(prompts_layer(box=box), PromptError)
    assert isinstance(predictor_layer(box=box), PromptError)


# ---- the pipeline and the model ----------------------------------------------------------------------
class RecordingPredictor:
    """Stands in for :class:`Predictor` in ``pipeline.segment``: records the prompts it is given."""

    def __init__(self) -> None:
        self.boxes: list[np.ndarray] = []

    def set_image(self, image: np.ndarray, key=None) -> None:
        self.shape = image.shape[:2]

    def is_cached(self, key, window=None) -> bool:
        return False

    def predict(self, points=None, labels=None, box=None, mask_input=None):
        self.boxes.append(box)
        return SimpleNamespace(mask=np.ones(self.shape, bool), score=1.0, logits=np.zeros((256, 256), np.float32))


def test_segment_sends_the_checked_prompts_and_leaves_the_callers_alone():
    stack = frames_along(Volume(np.zeros((1, 20, 30), np.uint8)), "axial")
    given_prompts = {0: FramePrompts(0, box=[-4, 2, 10, 40])}
    recorder = RecordingPredictor()
    # a fake has no encoder: no lookahead, and a rule that needs no encoder view of the masks
    pipeline.segment(stack, given_prompts, recorder, progress=False, lookahead=0, stop_rule=StopRule.legacy())
    np.testing.assert_array_equal(recorder.boxes[0], [0, 2, 10, 20])
    np.testing.assert_array_equal(given_prompts[0].box, [-4, 2, 10, 40])


@pytest.fixture(scope="module")
def tiny_predictor(tiny_checkpoint):
    from ultrasam.models import load_model

    predictor = Predictor(load_model(tiny_checkpoint))
    predictor.set_image(np.random.default_rng(0).integers(0, 255, (20, 30), dtype=np.uint8))
    return predictor


def test_predict_takes_points_up_to_the_edge_and_clips_boxes(tiny_predictor):
    """Through the model: x = W - 0.5 - 1e-9 is on the 30x20 image, x = W - 0.5 is not."""
    assert tiny_predictor.predict(points=[[29.5 - 1e-9, 19.5 - 1e-9], [-0.5, -0.5]]).mask.shape == (20, 30)
    with pytest.raises(PromptError, match=r"point 2 \(29.5, 3\) lies outside the 30x20 image"):
        tiny_predictor.predict(points=[[3.0, 3.0], [29.5, 3.0]])
    partly_outside = tiny_predictor.predict(box=[-5, -5, 35, 25], refine=False)
    np.testing.assert_array_equal(partly_outside.mask, tiny_predictor.predict(box=[0, 0, 30, 20], refine=False).mask)
