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
    cached, plain = Predictor(model), Predictor(model, fast_decoder=False)
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


@pytest.mark.parametrize("boxes", [1, 2], ids=["one box", "two boxes"])
def test_mask_input_prompts_match_segment_anything(predictors, boxes):
    """A mask prompt (refinement, propagation's carried logits) takes the same token-major path."""
    cached, plain = predictors
    if not cached.model.spec.mask_prompt:
        pytest.skip("no mask-prompt encoder")
    box = np.array([[8.0, 6.0, 70.0, 50.0], [20.0, 20.0, 60.0, 55.0]])[:boxes]
    previous = plain.predict(box=box).low_res_logits  # (B, 1, h, w)
    a = cached.predict(box=box, mask_input=previous)
    b = plain.predict(box=box, mask_input=previous)
    np.testing.assert_allclose(a.low_res_logits, b.low_res_logits, atol=1e-4, rtol=0)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5, rtol=0)
    assert (a.masks != b.masks).mean() < 1e-4


@pytest.mark.parametrize("masks_wanted", [1, 3])
def test_token_major_mask_head_equals_output_upscaling(predictors, masks_wanted):
    """Each image token's 4×4 patch lands where the transposed convolutions put it."""
    decoder = predictors[0].model.sam.mask_decoder
    generator = torch.Generator().manual_seed(1)
    h, w = 5, 7  # not square, so a swapped row/column order fails
    keys = torch.randn(2, h * w, decoder.transformer_dim, generator=generator)
    hyper = torch.randn(2, masks_wanted, decoder.transformer_dim // 8, generator=generator)
    with torch.no_grad():
        ours = decoder_cache.upscaled_masks(decoder, keys, hyper, (h, w))
        upscaled = decoder.output_upscaling(keys.transpose(1, 2).reshape(2, -1, h, w))
        expected = (hyper @ upscaled.flatten(2)).reshape(2, masks_wanted, 4 * h, 4 * w)
    assert ours.shape == expected.shape
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


def test_unknown_mask_head_layout_falls_back_to_the_module(predictors):
    decoder = predictors[0].model.sam.mask_decoder
    assert decoder_cache._token_major_upscaling(decoder)
    odd = torch.nn.Module()
    odd.output_upscaling = torch.nn.Sequential(
        torch.nn.ConvTranspose2d(decoder.transformer_dim, 4, kernel_size=4, stride=4), torch.nn.GELU()
    )
    assert not decoder_cache._token_major_upscaling(odd)
    keys = torch.randn(1, 6, decoder.transformer_dim)
    with torch.no_grad():
        hyper = torch.randn(1, 1, 4)
        out = decoder_cache.upscaled_masks(odd, keys, hyper, (2, 3))
        upscaled = odd.output_upscaling(keys.transpose(1, 2).reshape(1, -1, 2, 3))
    torch.testing.assert_close(out, (hyper @ upscaled.flatten(2)).reshape(1, 1, 8, 12))
