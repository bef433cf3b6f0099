"""Encoder variants of the downstream benchmarks: feature levels, LoRA (peft) and Med-SA adapters.

On the real LiteMedSAM encoder (TinyViT) and the golden fixture's tiny UltraSam ViT, at small
inputs so each test stays within seconds.
"""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("mmengine")
pytest.importorskip("peft")

from ultrasam_training.downstream.backbones import build_encoder_features  # noqa: E402
from ultrasam_training.downstream.encoders import masked_mean, pyramid, pyramid_channels  # noqa: E402


def _step(features, x):
    """One AdamW step on the trainable parameters against a fixed random target."""
    params = [p for p in features.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    features.train()
    out = features(x, with_levels=False, with_neck=False).pre_neck
    loss = (out - 1.0).square().mean()
    loss.backward()
    optimizer.step()


@pytest.fixture(scope="module")
def image():
    torch.manual_seed(0)
    return torch.rand(1, 3, 128, 128)


def test_tinyvit_levels_pyramid_and_pooling(litemedsam_checkpoint, image):
    features, spec = build_encoder_features(str(litemedsam_checkpoint), None, "frozen")
    assert spec.family == "litemedsam" and features.kind == "tinyvit"
    with torch.inference_mode():
        out = features(image)
        reference = features.encoder(image)
    shapes = [tuple(level.shape[1:]) for level in out.levels]
    assert shapes == [(64, 128, 128), (128, 64, 64), (160, 32, 32), (320, 32, 32)]
    assert torch.equal(out.neck, reference)  # the same computation as the encoder's own forward
    maps, strides = pyramid(features, out)
    assert [m.shape[1] for m in maps] == pyramid_channels(features) == [128, 160, 320, 256]
    assert strides == [2, 4, 4, 4]
    # pooling ignores the padding: zeroing the padded half changes nothing
    valid = torch.tensor([[0.5, 1.0]])
    padded = out.pre_neck.clone()
    padded[:, :, 16:] = 123.0
    assert torch.allclose(masked_mean(out.pre_neck, valid), masked_mean(padded, valid))
    assert not torch.allclose(masked_mean(out.pre_neck, None), masked_mean(padded, None))
    assert not any(p.requires_grad for p in features.parameters())


def test_lora_starts_equal_trains_only_lora_and_leaves_base_weights_untouched(litemedsam_checkpoint, image):
    base, _ = build_encoder_features(str(litemedsam_checkpoint), None, "frozen")
    lora, _ = build_encoder_features(
        str(litemedsam_checkpoint), None, "lora", lora=dict(rank=16, alpha=16, dropout=0.1, targets=("qkv",))
    )
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert sum("lora_A" in n for n in trainable) == 10  # every attention block of TinyViT-5M (2 + 6 + 2)
    base.eval(), lora.eval()
    with torch.inference_mode():
        assert torch.equal(lora(image).pre_neck, base(image).pre_neck)
    before = {n.replace(".base_layer", ""): p.detach().clone() for n, p in lora.named_parameters() if "lora_" not in n}
    _step(lora, image)
    after = {n.replace(".base_layer", ""): p for n, p in lora.named_parameters() if "lora_" not in n}
    assert before.keys() == after.keys() and all(torch.equal(before[n], after[n]) for n in before)
    assert before.keys() == dict(base.named_parameters()).keys()
    lora.eval()
    with torch.inference_mode():
        assert not torch.allclose(lora(image).pre_neck, base(image).pre_neck)  # the LoRA branch is used


def test_lora_on_a_vit_is_not_bypassed_by_the_fast_inference_path(tiny_checkpoint):
    base, _ = build_encoder_features(str(tiny_checkpoint), None, "frozen")
    lora, _ = build_encoder_features(str(tiny_checkpoint), None, "lora", lora=dict(rank=4, alpha=4, dropout=0.0))
    assert lora.kind == "vit"
    x = torch.rand(1, 3, lora.image_size, lora.image_size)
    base.eval(), lora.eval()
    with torch.inference_mode():
        start = lora(x).pre_neck
        assert torch.allclose(start, base(x).pre_neck, atol=1e-5)
    _step(lora, x)
    lora.eval()
    with torch.inference_mode():  # no autograd: where the accelerated path would read qkv.weight directly
        assert (lora(x).pre_neck - start).abs().max() > 1e-4


def test_medsa_adds_adapters_everywhere_and_trains_them_with_the_last_block(litemedsam_checkpoint, image):
    base, _ = build_encoder_features(str(litemedsam_checkpoint), None, "frozen")
    medsa, _ = build_encoder_features(
        str(litemedsam_checkpoint), None, "medsa", medsa=dict(ratio=0.25, scale=0.5, trainable_last_blocks=1)
    )
    names = {n for n, p in medsa.named_parameters() if p.requires_grad}
    adapters = {n for n in names if "_adapter" in n}
    assert len({n.split(".space_adapter")[0] for n in adapters if "space_adapter" in n}) == 10
    others = names - adapters
    assert others and all(n.startswith("encoder.layers.3.blocks.1.") for n in others)
    frozen_before = {n: p.detach().clone() for n, p in medsa.named_parameters() if not p.requires_grad}
    base.eval(), medsa.eval()
    with torch.inference_mode():
        out, ref = medsa(image).pre_neck, base(image).pre_neck
    assert out.shape == ref.shape and not torch.allclose(out, ref)  # non-zero adapter init, as the original
    snapshot = copy.deepcopy(dict(medsa.named_parameters()))
    _step(medsa, image)
    current = dict(medsa.named_parameters())
    assert all(torch.equal(frozen_before[n], current[n]) for n in frozen_before)
    assert any(not torch.equal(snapshot[n], current[n]) for n in adapters)


def test_medsa_identity_init_starts_equal_to_the_base_encoder_and_still_learns(litemedsam_checkpoint, image):
    """LP-FT: a head trained on the base features must meet the same features at step 0."""
    base, _ = build_encoder_features(str(litemedsam_checkpoint), None, "frozen")
    medsa, _ = build_encoder_features(
        str(litemedsam_checkpoint), None, "medsa", medsa=dict(ratio=0.25, scale=0.5, identity_init=True)
    )
    base.eval(), medsa.eval()
    with torch.inference_mode():
        torch.testing.assert_close(medsa(image).pre_neck, base(image).pre_neck, rtol=1e-5, atol=1e-5)
    adapters = {n: p.detach().clone() for n, p in medsa.named_parameters() if "_adapter" in n}
    _step(medsa, image)
    current = dict(medsa.named_parameters())
    assert any(not torch.equal(adapters[n], current[n]) for n in adapters if ".fc2." in n)  # zero output layer moves
