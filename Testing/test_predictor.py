"""Predictor behaviour: input handling, caching, batching, prompt validation, refinement options.

Uses the tiny UltraSam checkpoint of the golden fixture (a full 1024² pipeline with a 4-block
encoder, ~0.4 s per image) so every path runs quickly with real key layout and weights.
"""

from __future__ import annotations

import numpy as np
import pytest

from ultrasam.errors import ImageError, PromptError
from ultrasam.models import load_model
from ultrasam.predictor import Predictor
from ultrasam.transforms import mask_to_box, to_rgb_uint8


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return load_model(tiny_checkpoint)


@pytest.fixture()
def predictor(model) -> Predictor:
    return Predictor(model, cache_size=2)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    from ultrasam.phantom import synthetic_frame

    return synthetic_frame(200, 300, seed=3)[0]


def test_windowing_rule_uint16_and_float():
    ramp = np.arange(1000, dtype=np.uint16).reshape(20, 50) * 60
    out = to_rgb_uint8(ramp)
    lo, hi = np.percentile(ramp.astype(float), (0.5, 99.5))
    expected = np.clip(np.rint((ramp - lo) * 255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], expected)
    assert out.shape == (20, 50, 3) and (out[..., 0] == out[..., 2]).all()
    explicit = to_rgb_uint8(ramp.astype(np.float32), window=(0, 60 * 999))
    assert explicit[0, 0, 0] == 0 and explicit[-1, -1, 0] == 255


def test_rgba_drops_alpha_and_gray_replicates():
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 17
    assert (to_rgb_uint8(rgba)[..., 0] == 200).all() and to_rgb_uint8(rgba).shape == (4, 5, 3)
    gray = np.full((4, 5), 9, np.uint8)
    assert (to_rgb_uint8(gray) == 9).all()


@pytest.mark.parametrize(
    "image, message",
    [
        (np.full((8, 8), np.nan, np.float32), "NaN or infinite values in 64 pixels"),
        (np.zeros((0, 8), np.uint8), "empty"),
        (np.zeros((2, 8, 8, 3), np.uint8), "expected a 2D"),
        (np.array([["a"]]), "unsupported pixel type"),
    ],
)
def test_bad_images_are_rejected(predictor, image, message):
    with pytest.raises(ImageError, match=message):
        predictor.set_image(image)


def test_predict_without_image(predictor):
    with pytest.raises(ImageError, match="set_image"):
        predictor.predict(box=[0, 0, 5, 5])


def test_embedding_cache_hits_by_content_and_key(predictor, frame, monkeypatch):
    calls = []
    original = predictor._encode
    monkeypatch.setattr(predictor, "_encode", lambda rgb: calls.append(1) or original(rgb))
    predictor.set_image(frame)
    predictor.set_image(frame.copy())  # same pixels, new array: no second encode
    assert len(calls) == 1
    predictor.set_image(frame[::-1].copy())
    predictor.set_image(frame, key="slice-3")
    predictor.set_image(frame, key="slice-3")
    assert len(calls) == 3
    assert predictor.is_cached("slice-3")
    predictor.set_image(frame[:, ::-1].copy())  # cache_size=2 evicts the oldest entry
    assert len(calls) == 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"box": [50, 50, 50, 90]}, "degenerate"),
        ({"box": [60, 50, 40, 90]}, "degenerate"),
        ({"box": [-50, 0, -5, 90]}, "does not intersect"),
        ({"box": [299.5, 0, 400, 90]}, "does not intersect"),
        ({"box": [0, 0, np.nan, 9]}, "non-finite"),
        ({"points": [[300, 10]]}, "outside"),
        ({"points": [[10, -0.6]]}, "outside"),
        ({"points": [[10, 10]], "labels": [2]}, "1 .positive. or 0"),
        ({"points": [[10, 10], [20, 20]], "labels": [1]}, "does not match"),
        ({}, "at least one point or a box"),
    ],
)
def test_bad_prompts(predictor, frame, kwargs, message):
    predictor.set_image(frame)
    with pytest.raises(PromptError, match=message):
        predictor.predict(**kwargs)


def test_edges_of_the_image_are_valid_prompts(predictor, frame):
    predictor.set_image(frame)
    assert predictor.predict(box=[0, 0, 300, 200]).mask.shape == (200, 300)
    assert predictor.predict(points=[[-0.5, 199.4]]).mask.shape == (200, 300)


def test_batched_boxes_equal_single_calls(predictor, frame):
    predictor.set_image(frame)
    boxes = np.array([[10, 20, 120, 150], [150, 40, 290, 190]], float)
    batch = predictor.predict(box=boxes)
    assert batch.masks.shape == (2, 1, 200, 300)
    for i, box in enumerate(boxes):
        single = predictor.predict(box=box)
        np.testing.assert_array_equal(batch.masks[i, 0], single.mask)
        np.testing.assert_allclose(batch.scores[i, 0], single.score, atol=1e-5)


def test_multimask_and_refinement_switches(predictor, frame):
    predictor.set_image(frame)
    box = np.array([40, 30, 200, 170])
    multi = predictor.predict(box=box, multimask=True, refine=False)
    assert multi.masks.shape == (1, 3, 200, 300) and multi.passes == []
    refined = predictor.predict(box=box)  # UltraSam default: two passes, best of three
    assert len(refined.passes) == 2 and refined.masks.shape == (1, 1, 200, 300)
    all_three = predictor.predict(box=box, multimask=True)
    assert all_three.masks.shape == (1, 3, 200, 300)
    np.testing.assert_array_equal(all_three.mask, refined.mask)


def test_negative_points_survive_refinement_and_change_the_answer(predictor, frame):
    predictor.set_image(frame)
    positive = predictor.predict(points=[[150, 100]])
    with_negative = predictor.predict(points=[[150, 100], [60, 40]], labels=[1, 0])
    second = with_negative.passes[1]
    assert second.points is not None and second.points.shape == (1, 1, 2)  # the negative click is kept
    assert second.boxes is not None  # the positive click became the pass-1 box
    assert not np.array_equal(positive.logits, with_negative.logits)


def test_mask_input_feeds_back(predictor, frame):
    predictor.set_image(frame)
    first = predictor.predict(box=[40, 30, 200, 170], refine=False)
    again = predictor.predict(box=[40, 30, 200, 170], mask_input=first.logits[None], refine=False)
    assert not np.array_equal(first.logits, again.logits)


def test_mask_to_box_exclusive_corner():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    np.testing.assert_array_equal(mask_to_box(mask), [3, 2, 9, 5])
    assert mask_to_box(np.zeros((3, 3), bool)) is None
