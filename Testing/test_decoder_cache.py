"""The decoder with prompt-independent terms cached per image computes what segment_anything's does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ultrasam import decoder_cache
from ultrasam.models import open_model
from ultrasam.predictor import Predictor

PROMPTS = [
    dict(points=np.array([[40.0, 30.0]]), labels=np.array([1])),
    dict(points=np.array([[40.0, 30.0], [10.0, 12.0]]), labels=np.array([1, 0])),
    dict(box=np.array([8.0, 6.0, 70.0, 50.0])),
    dict(box=np.array([[8.0, 6.0, 70.0, 50.0], [20.0, 20.0, 60.0, 55.0]])),
    dict(box=np.array([8.0, 6.0, 70.0, 50.0]), points=np.array([[30.0, 30.0]]), labels=np.array([0]), multimask=True),
]


@pytest.fixture(scope="module", params=["tiny_checkpoint", "litemedsam_checkpoint"])
def predictors(request):
    model = open_model(request.getfixturevalue(request.param), device="cpu", fast=False)
    assert decoder_cache.supports(model.sam)
    cached, plain = Predictor(model), Predictor(model)
    plain._cached_decoder = False
    image = np.random.default_rng(0).integers(0, 255, (64, 80), dtype=np.uint8)
    for predictor in (cached, plain):
        predictor.set_image(image)
    return cached, plain


@pytest.mark.parametrize("prompt", PROMPTS, ids=["click", "click+negative", "box", "two boxes", "multimask"])
@pytest.mark.parametrize("refine", [False, True])
def test_cached_decoder_matches_segment_anything(predictors, prompt, refine):
    cached, plain = predictors
    if refine and not cached.model.spec.mask_prompt:
        pytest.skip("no mask-prompt encoder")
    a, b = cached.predict(refine=refine, **prompt), plain.predict(refine=refine, **prompt)
    np.testing.assert_allclose(a.low_res_logits, b.low_res_logits, atol=1e-4, rtol=0)  # the fidelity tolerance
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5, rtol=0)
    assert (a.masks != b.masks).mean() < 1e-4  # at most a pixel flips where a logit sits at 0 ± 1e-5


def test_image_side_is_computed_once_per_image(predictors):
    cached, _ = predictors
    cached.predict(points=np.array([[40.0, 30.0]]), labels=np.array([1]))
    side = cached._require_image().side
    cached.predict(box=np.array([8.0, 6.0, 70.0, 50.0]))
    assert cached._require_image().side is side and side.keys.shape[1] == side.hw[0] * side.hw[1]
    assert torch.equal(side.pe, cached.model.sam.prompt_encoder.get_dense_pe().flatten(2).permute(0, 2, 1))
