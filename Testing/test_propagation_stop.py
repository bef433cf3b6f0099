"""Propagation: where it stops, keyframe fusion, barriers, and the encoder worker.

* The stop rule (:class:`ultrasam.propagate.StopRule`) on synthetic masks: each test names its
  reason, and :meth:`Evidence.measure` agrees with geometry written out here.
* Keyframes and barriers through a stand-in predictor whose decoder follows its box prompt (each
  sweep carries its keyframe's rectangle unchanged), so the expected masks are exact arrays.
* The real LiteMedSAM on a clear phantom (not one of the ``phantom.VALIDATION_SEEDS`` cases the
  rule's thresholds were chosen on): the sweeps stop within one slice of the object's ends and write
  nothing beyond them (seed 6 of the same phantom does too). The rule is not exact on harder cases:
  ``Testing/benchmarks/bench_volume.py`` measures it over many.
* The encoder worker gives the masks on-demand encoding gives, and stops with a cancelled run.
* ``on_result`` reports every frame of the result, last with its final mask (again after fusion
  replaced it; a held-back frame only once confirmed), on the frame's own grid through
  ``pipeline.segment``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ultrasam import pipeline
from ultrasam.errors import PromptError
from ultrasam.frames import frames_along
from ultrasam.phantom import Lesion, dice, synthetic_volume
from ultrasam.predictor import Prediction, Predictor
from ultrasam.prompts import FramePrompts
from ultrasam.propagate import (
    Appearance,
    Carry,
    Evidence,
    SliceResult,
    StopRule,
    contrast_ratio,
    echo_contrast,
    grow_box,
    propagate,
)
from ultrasam.transforms import mask_to_box
from ultrasam.volume import Volume

SHAPE = (32, 40)


class BoxFollowingPredictor:
    """A stand-in for :class:`~ultrasam.predictor.Predictor`: the mask is the pixels lying wholly
    inside the prompt box, so a propagated box (the mask's box grown by 5 %) gives back the same
    rectangle and each sweep carries its keyframe's rectangle. ``score(frame, box)`` is the
    predicted IoU. Records the frames it was asked to encode."""

    def __init__(self, score=lambda frame, box: 0.9) -> None:
        self.score = score
        self.encoded: list[int] = []
        self.frame: int | None = None
        self.shape = SHAPE

    def is_cached(self, key, window=None) -> bool:
        return False

    def set_image(self, image, key=None) -> None:
        self.frame = key[1]
        self.encoded.append(self.frame)

    def predict(self, points=None, labels=None, box=None, mask_input=None, multimask=False, refine=None) -> Prediction:
        mask = np.zeros(self.shape, bool)
        x0, y0, x1, y1 = box
        mask[int(np.ceil(y0)) : int(np.floor(y1)), int(np.ceil(x0)) : int(np.floor(x1))] = True
        logits = np.where(mask, 8.0, -8.0)
        return Prediction(mask[None, None], np.array([[self.score(self.frame, box)]]), logits[None, None])


def rectangle(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[y0:y1, x0:x1] = True
    return mask


LEFT, RIGHT = (2, 3, 12, 11), (22, 14, 36, 28)


def run(prompts: dict, num_frames: int = 12, predictor=None, **options):
    predictor = predictor or BoxFollowingPredictor()
    options.setdefault("stop_rule", StopRule.legacy())
    return propagate(predictor, lambda n: np.zeros(SHAPE), num_frames, prompts, lookahead=0, progress=False, **options)


# ------------------------------------------------------------------------------------- keyframes
def test_every_frame_takes_the_mask_of_its_nearest_keyframe():
    results = run({2: FramePrompts(2, box=np.array(LEFT)), 7: FramePrompts(7, box=np.array(RIGHT))})
    assert sorted(results) == list(range(12))
    for frame, result in results.items():
        nearest = 2 if abs(frame - 2) < abs(frame - 7) else 7
        np.testing.assert_array_equal(result.mask, rectangle(*(LEFT if nearest == 2 else RIGHT)))
        assert result.keyframe == nearest and result.prompted == (frame in (2, 7))


def test_a_frame_between_two_keyframes_keeps_the_higher_score():
    for winner in (LEFT, RIGHT):  # frame 5 lies 3 frames from each keyframe
        predictor = BoxFollowingPredictor(score=lambda frame, box: 0.9 if (box[0] < 15) == (winner == LEFT) else 0.7)
        results = run(
            {2: FramePrompts(2, box=np.array(LEFT)), 8: FramePrompts(8, box=np.array(RIGHT))}, predictor=predictor
        )
        np.testing.assert_array_equal(results[5].mask, rectangle(*winner))
        np.testing.assert_array_equal(results[4].mask, rectangle(*LEFT))
        np.testing.assert_array_equal(results[6].mask, rectangle(*RIGHT))
        assert predictor.encoded.count(5) == 2 and all(predictor.encoded.count(n) == 1 for n in range(12) if n != 5)


def test_a_stopped_sweep_leaves_its_frames_to_the_other_keyframe():
    # keyframe 8's sweep down is stopped at 6 by a low score; keyframe 2's sweep carries on up to 6
    predictor = BoxFollowingPredictor(score=lambda frame, box: 0.2 if frame == 6 and box[0] > 15 else 0.9)
    results = run(
        {2: FramePrompts(2, box=np.array(LEFT)), 8: FramePrompts(8, box=np.array(RIGHT))}, predictor=predictor
    )
    for frame in range(12):
        np.testing.assert_array_equal(results[frame].mask, rectangle(*(LEFT if frame <= 6 else RIGHT)))
    ends = {(end.keyframe, end.step): end for end in results.sweeps}
    assert ends[8, -1].reason == "score" and ends[8, -1].at == 6 and ends[8, -1].last == 7
    assert ends[2, 1].reason == "met the sweep from 8" and ends[2, 1].last == 6


def test_one_doubted_frame_is_kept_and_patience_doubted_frames_in_a_row_end_the_sweep():
    rule = replace(StopRule.legacy(), patience=2)
    dip = BoxFollowingPredictor(score=lambda frame, box: 0.2 if frame == 7 else 0.9)  # one odd frame
    results = run({4: FramePrompts(4, box=np.array(LEFT))}, predictor=dip, stop_rule=rule)
    assert sorted(results) == list(range(12)) and results[7].score == pytest.approx(0.2)
    gone = BoxFollowingPredictor(score=lambda frame, box: 0.2 if frame >= 7 else 0.9)  # the object ends after 6
    results = run({4: FramePrompts(4, box=np.array(LEFT))}, predictor=gone, stop_rule=rule)
    assert sorted(results) == list(range(7))
    (up,) = [end for end in results.sweeps if end.step == 1]
    assert (up.last, up.at, up.reason) == (6, 7, "score") and up.evidence.score == pytest.approx(0.2)


def test_a_sweep_stops_where_the_object_no_longer_stands_out_from_its_surroundings():
    """The stand-in's masks follow the box everywhere (model evidence never changes); the frames hold a
    dark object under that box on frames 3..8 only. With a contrast test, both sweeps end on the first
    frame whose mask has lost the keyframe's echo contrast, naming it."""
    rng = np.random.default_rng(1)
    frames = rng.normal(120.0, 12.0, (12, *SHAPE))
    for n in range(3, 9):
        frames[n][rectangle(*LEFT)] -= 40.0
    rule = replace(StopRule.legacy(), min_contrast=0.5)
    results = propagate(
        BoxFollowingPredictor(), lambda n: frames[n], 12, {5: FramePrompts(5, box=np.array(LEFT))},
        lookahead=0, progress=False, stop_rule=rule,
    )
    assert sorted(results) == list(range(3, 9))
    ends = {end.step: end for end in results.sweeps}
    assert (ends[-1].at, ends[-1].reason, ends[1].at, ends[1].reason) == (2, "faded", 9, "faded")
    assert ends[1].evidence.contrast < 0.2
    unchecked = propagate(  # the same run without the test: the sweeps cross the object's ends
        BoxFollowingPredictor(), lambda n: frames[n], 12, {5: FramePrompts(5, box=np.array(LEFT))},
        lookahead=0, progress=False, stop_rule=StopRule.legacy(),
    )
    assert sorted(unchecked) == list(range(12))


def test_a_frame_with_only_negative_clicks_stops_propagation_and_gets_no_mask():
    negative = dict(points=np.array([[1.0, 1.0]]), labels=np.array([0]))
    prompts = {2: FramePrompts(2, **negative), 5: FramePrompts(5, box=np.array(LEFT)), 9: FramePrompts(9, **negative)}
    results = run(prompts)
    assert sorted(results) == [3, 4, 5, 6, 7, 8]
    assert sorted(end.reason for end in results.sweeps) == ["negative prompt on 2", "negative prompt on 9"]


def test_an_empty_keyframe_mask_is_kept_and_not_carried():
    results = run({5: FramePrompts(5, box=np.array([2.5, 2.5, 3.6, 3.6]))})  # no whole pixel inside the box
    assert sorted(results) == [5] and not results[5].mask.any()
    assert [end.reason for end in results.sweeps] == ["empty", "empty"]


def test_only_negative_prompts_are_refused():
    with pytest.raises(PromptError, match="only negative prompts"):
        run({3: FramePrompts(3, points=np.array([[1.0, 1.0]]), labels=np.array([0]))})


def test_sweeps_end_at_the_range_and_on_cancel():
    results = run({5: FramePrompts(5, box=np.array(LEFT))}, frame_range=(3, 8))
    assert sorted(results) == [3, 4, 5, 6, 7, 8]
    assert [end.reason for end in results.sweeps] == ["range end", "range end"]
    calls = []
    results = run({5: FramePrompts(5, box=np.array(LEFT))}, should_stop=lambda: len(calls.append(0) or calls) > 3)
    assert len(results) < 12 and {end.reason for end in results.sweeps} == {"cancelled"}


# ------------------------------------------------------------------------------------ results as they come
class Reports:
    """What ``on_result`` was told, in order: ``(frame, mask)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, np.ndarray]] = []

    def __call__(self, index: int, result) -> None:
        assert result.index == index
        self.calls.append((index, result.mask.copy()))

    @property
    def frames(self) -> list[int]:
        return [n for n, _ in self.calls]

    def check_final(self, results) -> None:
        """Every frame of ``results`` was reported, none other, and its last report is its mask."""
        assert sorted(set(self.frames)) == sorted(results)
        last = dict(self.calls)
        for index, result in results.items():
            np.testing.assert_array_equal(last[index], result.mask)


def test_each_frame_is_reported_when_decided_and_again_when_fusion_replaces_it():
    for winner, reports_of_5 in ((LEFT, 1), (RIGHT, 2)):  # frame 5: 3 frames from each keyframe
        predictor = BoxFollowingPredictor(score=lambda frame, box: 0.9 if (box[0] < 15) == (winner == LEFT) else 0.7)
        reports = Reports()
        results = run(
            {2: FramePrompts(2, box=np.array(LEFT)), 8: FramePrompts(8, box=np.array(RIGHT))},
            predictor=predictor,
            on_result=reports,
        )
        reports.check_final(results)
        assert reports.frames[:2] == [2, 8] and reports.frames.count(5) == reports_of_5
        assert all(reports.frames.count(n) == 1 for n in results if n != 5)
        first_5 = next(mask for n, mask in reports.calls if n == 5)
        np.testing.assert_array_equal(first_5, rectangle(*LEFT))  # keyframe 2's sweep got there first
        assert results.encoded == len(predictor.encoded) == 13  # frame 5 twice (the stand-in caches nothing)


def test_held_back_frames_are_reported_once_confirmed_and_dropped_ones_never():
    rule = replace(StopRule.legacy(), patience=2)
    dip = BoxFollowingPredictor(score=lambda frame, box: 0.2 if frame == 7 else 0.9)  # one odd frame, then on
    reports = Reports()
    results = run({4: FramePrompts(4, box=np.array(LEFT))}, predictor=dip, stop_rule=rule, on_result=reports)
    reports.check_final(results)
    upward = [n for n in reports.frames if n > 4]
    assert upward == sorted(upward) and len(reports.frames) == len(results) == 12  # 7 only once 8 confirmed it
    gone = BoxFollowingPredictor(score=lambda frame, box: 0.2 if frame >= 7 else 0.9)  # the object ends after 6
    reports = Reports()
    results = run({4: FramePrompts(4, box=np.array(LEFT))}, predictor=gone, stop_rule=rule, on_result=reports)
    reports.check_final(results)
    assert sorted(reports.frames) == list(range(7))  # 7 and 8 were held back, then dropped: never reported


def test_a_cancelled_run_reports_exactly_the_frames_it_returns():
    calls, reports = [], Reports()
    results = run(
        {5: FramePrompts(5, box=np.array(LEFT))},
        should_stop=lambda: len(calls.append(0) or calls) > 3,
        on_result=reports,
    )
    reports.check_final(results)
    assert 1 <= len(results) < 12


class GridFollowingPredictor(BoxFollowingPredictor):
    """:class:`BoxFollowingPredictor` on images of any size: masks take the size of the image set."""

    def set_image(self, image, key=None) -> None:
        super().set_image(image, key)
        self.shape = image.shape[:2]


def test_pipeline_reports_each_mask_on_the_frames_own_grid():
    """Frames with pixels twice as tall as wide are segmented on square pixels; what ``on_result``
    gets is already mapped back, and equals what ``pipeline.segment`` returns."""
    image = np.random.default_rng(0).integers(0, 255, (20, 30, 6), dtype=np.uint8)  # [k, j, i]
    stack = frames_along(Volume(image, spacing=np.array([1.0, 1.0, 2.0])), "sagittal")  # rows k: 2 mm
    assert not stack[3].is_square and stack[3].square().image.shape[:2] != stack.frame_shape
    predictor, reports = GridFollowingPredictor(), Reports()

    results = pipeline.segment(
        stack,
        {3: FramePrompts(3, box=np.array([4.0, 3.0, 22.0, 15.0]))},
        predictor,
        propagate=True,
        stop_rule=StopRule.legacy(),
        lookahead=0,
        progress=False,
        on_result=reports,
    )

    assert sorted(results) == list(range(6)) and reports.frames[0] == 3
    assert all(mask.shape == stack.frame_shape for _, mask in reports.calls)
    reports.check_final(results)
    assert all(results[n].mask.any() for n in results)


# ------------------------------------------------------------------------------------ stop rule
def evidence(**values) -> Evidence:
    """Evidence of a healthy propagated frame, with ``values`` changed."""
    base = dict(area=400, previous_area=420, box_iou=0.8, fill=0.6, score=0.85, stability=0.9, keyframe_contrast=2.0)
    return Evidence(**{**base, **values})


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (dict(area=0), "empty"),
        (dict(score=0.1), "score"),
        (dict(stability=0.05), "unstable"),
        (dict(area=4000), "grew"),
        (dict(area=10), "shrank"),
        (dict(fill=0.99), "fills box"),
        (dict(box_iou=0.05), "off box"),
        (dict(similarity=0.5), "unlike keyframe"),
        (dict(margin=-0.5), "background"),
        (dict(contrast=0.1), "faded"),
    ],
)
def test_each_test_of_the_rule_names_its_reason(change, reason):
    rule = StopRule(
        min_area=1,
        min_score=0.5,
        min_stability=0.3,
        max_growth=3.0,
        min_shrink=0.1,
        max_fill=0.95,
        min_box_iou=0.2,
        min_similarity=0.8,
        min_margin=-0.1,
        min_contrast=0.4,
    )
    assert rule.reason(evidence()) is None
    assert rule.reason(evidence(**change)) == reason


@settings(max_examples=40, deadline=None)
@given(
    inside=st.floats(20, 200),
    outside=st.floats(20, 200),
    noise=st.floats(2, 20),
    radius=st.integers(6, 20),
    seed=st.integers(0, 2**16),
)
def test_echo_contrast_is_the_contrast_to_noise_ratio_of_a_disk(inside, outside, noise, radius, seed):
    """A disk of mean ``inside`` in tissue of mean ``outside``, both with noise ``noise``: the measure is
    (outside - inside) / noise, signed (a dark object is positive), whatever the disk's size."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:64, :64]
    disk = (rows - 32) ** 2 + (cols - 32) ** 2 <= radius**2
    image = np.where(disk, inside, outside) + rng.normal(0.0, noise, disk.shape)
    expected = (outside - inside) / noise
    # sampling error: each mean carries noise / sqrt(pixels) (allow 5 of those, both regions at least the
    # disk's size); the pooled deviation from ~200 pixels is off by up to ~15 % (allow 20 %)
    sampling = 5.0 * np.sqrt(2.0 / disk.sum())
    assert echo_contrast(image, disk) == pytest.approx(expected, abs=sampling + 0.2 * abs(expected))
    rgb = np.repeat(image[..., None], 3, axis=-1)  # colour frames are read as their grey level
    assert echo_contrast(rgb, disk) == pytest.approx(echo_contrast(image, disk), rel=1e-4, abs=1e-4)


def test_a_mask_on_uniform_tissue_has_no_contrast_and_its_ratio_fades():
    rng = np.random.default_rng(0)
    tissue = rng.normal(100.0, 10.0, (64, 64))
    mask = np.zeros((64, 64), bool)
    mask[20:40, 24:44] = True
    assert abs(echo_contrast(tissue, mask)) < 0.2
    assert echo_contrast(tissue, np.zeros_like(mask)) == 0.0
    assert contrast_ratio(echo_contrast(tissue, mask), 3.0) < 0.1  # the keyframe's object stood out
    assert contrast_ratio(-3.0, 3.0) == -1.0  # brighter where the keyframe's object was darker
    assert contrast_ratio(0.0, None) == contrast_ratio(0.0, 0.0) == 1.0  # nothing to compare with
    rule = StopRule(min_contrast=0.4, contrast_floor=0.5)
    assert rule.reason(evidence(contrast=0.1, keyframe_contrast=0.6, similarity=0.95, margin=0.05)) == "faded"
    # a keyframe not told apart from its surroundings by echo: the test does not apply
    assert rule.reason(evidence(contrast=0.1, keyframe_contrast=0.3, similarity=0.95, margin=0.05)) is None


def test_the_default_rule_keeps_a_healthy_frame_and_compares_appearance():
    assert StopRule().reason(evidence(similarity=0.95, margin=0.05)) is None
    assert StopRule().compares_appearance and not StopRule.legacy().compares_appearance
    assert not StopRule.legacy().compares_contrast and StopRule(min_contrast=0.3).compares_contrast
    assert StopRule().patience == 2 and StopRule.legacy().patience == 1


def test_the_legacy_rule_stops_only_on_an_empty_mask_or_a_low_score():
    legacy = StopRule.legacy(min_score=0.5)
    for change in (
        dict(stability=0.0),
        dict(area=40000),
        dict(area=1),
        dict(fill=1.0),
        dict(box_iou=0.0),
        dict(similarity=-0.9),
        dict(margin=-1.9),
    ):
        assert legacy.reason(evidence(**change)) is None
    assert legacy.reason(evidence(area=0)) == "empty" and legacy.reason(evidence(score=0.49)) == "score"


def test_appearance_compares_what_the_encoder_sees_under_the_mask_with_the_keyframe():
    embedding = torch.zeros(1, 2, 8, 8)
    embedding[0, 0, :4] = 1.0  # channel 0: the object, on the top half of the grid
    embedding[0, 1, 4:] = 1.0  # channel 1: background
    keyframe = Appearance(inside=np.array([1.0, 0.0]), around=np.array([0.0, 1.0]))
    on_object, on_background = np.full((32, 32), -5.0), np.full((32, 32), -5.0)  # low-res logits: 4 px per cell
    on_object[4:12, 8:20] = 5.0
    on_background[20:28, 8:20] = 5.0
    look = Appearance.measure(embedding, on_object, valid=(1.0, 1.0))
    assert look.similarity(keyframe) == pytest.approx(1.0) and look.margin(keyframe) == pytest.approx(1.0)
    look = Appearance.measure(embedding, on_background, valid=(1.0, 1.0))
    assert look.similarity(keyframe) == pytest.approx(0.0) and look.margin(keyframe) == pytest.approx(-1.0)


boxes = st.tuples(st.integers(0, 30), st.integers(0, 20), st.integers(2, 10), st.integers(2, 10))


@settings(max_examples=200, deadline=None)
@given(prompt=boxes, mask=boxes, previous=st.integers(0, 200))
def test_evidence_measures_the_mask_against_its_prompt_box(prompt, mask, previous):
    px, py, pw, ph = prompt
    mx, my, mw, mh = mask
    box = np.array([px, py, px + pw, py + ph], float)
    drawn = rectangle(mx, my, mx + mw, my + mh)
    measured = Evidence.measure(
        drawn, np.where(drawn, 3.0, -3.0), 0.8, box, np.arange(SHAPE[0] * SHAPE[1]).reshape(SHAPE) < previous
    )
    overlap = max(0, min(px + pw, mx + mw) - max(px, mx)) * max(0, min(py + ph, my + mh) - max(py, my))
    assert measured.area == mw * mh and measured.previous_area == previous
    assert measured.box_iou == pytest.approx(overlap / (pw * ph + mw * mh - overlap))
    assert measured.fill == pytest.approx(mw * mh / (pw * ph))
    assert measured.stability == 1.0  # the mask does not move between logit thresholds -1 and +1
    assert measured.growth == (mw * mh / previous if previous else float("inf"))


def test_stability_is_the_iou_of_the_mask_at_logit_thresholds_plus_and_minus_one():
    logits = np.array([[-2.0, -0.5, 0.5, 2.0]])
    measured = Evidence.measure(logits > 0, logits, 0.9, np.array([0.0, 0.0, 4.0, 1.0]), logits > 0)
    assert measured.stability == pytest.approx(1 / 3)  # > +1: one pixel; > -1: three


# ------------------------------------------------------------------------------ carried prompts
def test_the_carry_prompts_the_next_frame_from_the_previous_mask():
    mask = rectangle(10, 5, 30, 15)  # rows 5..14, columns 10..29
    previous = SliceResult(0, mask, 0.9, np.where(mask, 8.0, -8.0), True, 0)
    boxed = Carry().prompts(previous)  # LiteMedSAM's: the mask's box grown, nothing else
    assert set(boxed) == {"box"}
    np.testing.assert_array_equal(boxed["box"], grow_box(np.array([10, 5, 30, 15]), 0.05, SHAPE, 0.02))
    assert boxed["box"][0] < 10 and boxed["box"][3] > 15
    tight = Carry.for_family("ultrasam_lite").prompts(previous)
    np.testing.assert_array_equal(tight["box"], [10, 5, 30, 15])  # the mask's own box, edge coordinates
    np.testing.assert_array_equal(tight["mask_input"], previous.logits[None])
    (x, y), = tight["points"]
    assert tight["labels"].tolist() == [1]
    assert y in (9, 10) and 14 <= x <= 25  # 5 px from every edge: as deep as this rectangle goes
    assert Carry.for_family("litemedsam") == Carry() == Carry.for_family(None)


def test_the_model_family_picks_the_carry_and_the_stop_rule():
    class Spec:
        family = "ultrasam_lite"

    class Model:
        spec = Spec()

    calls = []

    class Recording(BoxFollowingPredictor):
        model = Model()

        def predict(self, **kwargs):
            calls.append(kwargs)
            return super().predict(**kwargs)

    results = propagate(Recording(), lambda n: np.zeros(SHAPE), 5, {2: FramePrompts(2, box=np.array(LEFT, float))},
                        lookahead=0, progress=False, stop_rule=StopRule.legacy())  # a stand-in has no embedding
    carried = [c for c in calls if c.get("points") is not None]
    assert len(carried) == len(calls) - 1 == 4 and all(c["mask_input"] is not None for c in carried)
    assert sorted(results) == list(range(5))
    lite = StopRule.for_family("ultrasam_lite")
    assert lite.patience == 2 and lite.compares_contrast and StopRule.for_family("litemedsam") == StopRule()


# ------------------------------------------------------------------------------ the real model
@pytest.fixture(scope="module", params=["litemedsam", "ultrasam_lite"])
def clear_sweep(request, litemedsam_checkpoint):
    """A dark lesion on sagittal slices 5..15 of 20, propagated from slice 10's box with LiteMedSAM and
    with the default UltraSam-Lite, each with its family's carry and stop rule."""
    from ultrasam.models import open_model

    image, truth = synthetic_volume(
        (48, 128, 20), Lesion(center=(24, 64, 10), radii=(10, 26, 6), echogenicity=0.08), seed=5
    )
    box = mask_to_box(truth[:, :, 10]) + np.array([-3.0, -3.0, 3.0, 3.0])
    model = open_model(litemedsam_checkpoint) if request.param == "litemedsam" else open_model(request.param, device="cpu")
    predictor = Predictor(model, cache_size=64)
    results = pipeline.segment(
        frames_along(Volume(image), "sagittal"),
        {10: FramePrompts(10, box=box)},
        predictor,
        propagate=True,
        progress=False,
    )
    return results, truth


def test_sweeps_stop_within_one_slice_of_the_object_ends(clear_sweep):
    results, truth = clear_sweep
    lesion = np.flatnonzero(truth.any(axis=(0, 1)))
    ends = {end.step: end for end in results.sweeps}
    assert abs(ends[-1].last - lesion[0]) <= 1 and abs(ends[1].last - lesion[-1]) <= 1
    assert ends[-1].at is not None and ends[1].at is not None  # stopped by the rule, not by the volume's edges
    assert np.mean([dice(results[n].mask, truth[:, :, n]) for n in lesion if n in results]) >= 0.7


def test_nothing_is_written_beyond_the_object_and_one_slice(clear_sweep):
    results, truth = clear_sweep
    lesion = np.flatnonzero(truth.any(axis=(0, 1)))
    written = [n for n, result in results.items() if result.mask.any()]
    assert lesion[0] - 1 <= min(written) and max(written) <= lesion[-1] + 1


def test_encoding_ahead_on_the_worker_changes_nothing(tiny_checkpoint):
    from ultrasam.models import open_model

    model = open_model(tiny_checkpoint)
    image, truth = synthetic_volume((48, 96, 10), seed=3)
    prompts = {5: FramePrompts(5, box=mask_to_box(truth[:, :, 5]))}
    runs = [
        propagate(
            Predictor(model),
            lambda n: image[:, :, n],
            10,
            prompts,
            lookahead=ahead,
            progress=False,
            stop_rule=StopRule.legacy(0.0),
        )
        for ahead in (0, 3)
    ]
    assert sorted(runs[0]) == sorted(runs[1]) == list(range(10))
    assert runs[0].encoded == runs[1].encoded == 10  # each frame once, by this thread or by the worker
    for index in runs[0]:
        np.testing.assert_array_equal(runs[0][index].mask, runs[1][index].mask)
        assert runs[0][index].score == runs[1][index].score


def test_cancel_ends_the_run_and_its_worker(tiny_checkpoint):
    import threading

    from ultrasam.models import open_model

    image, truth = synthetic_volume((48, 96, 10), seed=3)
    polls = []
    results = propagate(
        Predictor(open_model(tiny_checkpoint)),
        lambda n: image[:, :, n],
        10,
        {5: FramePrompts(5, box=mask_to_box(truth[:, :, 5]))},
        lookahead=2,
        progress=False,
        should_stop=lambda: len(polls.append(0) or polls) > 3,
        stop_rule=StopRule.legacy(0.0),
    )
    assert 1 <= len(results) < 10 and {end.reason for end in results.sweeps} == {"cancelled"}
    assert not any(thread.name == "ultrasam-encoder" for thread in threading.enumerate())


def test_cli_propagates_a_cine_from_several_keyframes(tmp_path, tiny_checkpoint, capsys):
    import SimpleITK as sitk

    from ultrasam.cli import main
    from ultrasam.phantom import phantom_case

    case = phantom_case("cine", seed=3)
    cine = tmp_path / "cine.nrrd"
    sitk.WriteImage(case.volume.to_sitk(), str(cine))
    (first, prompt), (second, _) = case.box_prompts(2).items()
    out = tmp_path / "cine.seg.nrrd"
    arguments = [
        "segment",
        cine,
        "--frame",
        first,
        "--frame",
        second,
        "--box",
        *prompt.box,
        "--propagate",
        "--stop-rule",
        "score",
        "--min-score",
        "0",
        "--range",
        first - 2,
        second + 2,
        "--checkpoint",
        tiny_checkpoint,
        "--out",
        out,
    ]
    assert main([str(a) for a in arguments]) == 0
    printed = capsys.readouterr().out
    assert printed.count("propagation from") == 4 and f"wrote {out} ({second - first + 5} frames)" in printed
