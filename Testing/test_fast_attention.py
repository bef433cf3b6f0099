"""FastAttention / accelerate_image_encoder reproduce segment_anything's encoder.

The expected values always come from ``segment_anything``'s own modules holding the same
weights; relative-position tables are drawn non-zero so the bias paths count.
"""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention, Block, ImageEncoderViT
from torch import nn

from ultrasam.models import fast_attention
from ultrasam.models.fast_attention import FastAttention, FastBlock, accelerate_image_encoder, use_cpu_fast_path

ATOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: the maths is the same, and on a shared 2-core machine two OpenMP
    threads waiting on each other at every small op make these tests several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _randomise(module: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            scale = 0.3 if ("rel_pos" in name or "pos_embed" in name) else 1.0 / parameter.shape[-1] ** 0.5
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    return module.eval()


def _pair(dim: int, heads: int, input_size: tuple[int, int], seed: int = 0) -> tuple[Attention, FastAttention]:
    reference = _randomise(Attention(dim, heads, True, True, True, input_size), seed)
    fast = FastAttention(dim, heads, True, True, True, input_size)
    fast.load_state_dict(reference.state_dict())
    return reference, fast.eval()


def _input(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


ATTENTION_CASES = {
    # name: (dim, heads, rel-pos input_size, x shape)
    "window 14": (64, 2, (14, 14), (5, 14, 14, 64)),
    "global 64x64 tokens": (64, 2, (64, 64), (1, 64, 64, 64)),
    "global non-square, batch 2": (48, 3, (9, 13), (2, 9, 13, 48)),
    "rel-pos interpolated (table for 14, grid 10)": (32, 4, (14, 14), (2, 10, 10, 32)),
    "head_dim 80 as in ViT-h": (160, 2, (14, 14), (2, 14, 14, 160)),
}


@pytest.fixture(params=[True, False], ids=["oneDNN", "plain matmul"])
def onednn(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test with oneDNN products (x86-64) and with the portable fallback used elsewhere."""
    if request.param and not fast_attention._has_onednn_linear():
        pytest.skip("oneDNN linear unavailable on this machine")
    monkeypatch.setattr(fast_attention, "_ONEDNN_LINEAR", request.param)
    return request.param


@pytest.mark.parametrize("case", ATTENTION_CASES, ids=list(ATTENTION_CASES))
def test_inference_output_matches_reference(case: str, onednn: bool) -> None:
    dim, heads, input_size, shape = ATTENTION_CASES[case]
    reference, fast = _pair(dim, heads, input_size)
    x = _input(shape)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), reference(x), atol=ATOL, rtol=0)


def test_row_chunks_with_remainder_match_reference(monkeypatch: pytest.MonkeyPatch, onednn: bool) -> None:
    # 16 rows of 16 tokens, budget of 3 rows' scores: chunks of 3,3,3,3,3,1 rows per head.
    monkeypatch.setattr(fast_attention, "CHUNK_BYTES", 3 * 16 * 256 * 4)
    reference, fast = _pair(32, 2, (16, 16))
    x = _input((2, 16, 16, 32))
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), reference(x), atol=ATOL, rtol=0)


def test_window_batches_with_remainder_match_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    # 7 windows x 2 heads = 14 groups, 4 groups' scores per chunk: 4,4,4,2.
    monkeypatch.setattr(fast_attention, "CHUNK_BYTES", 4 * 49 * 49 * 4)
    reference, fast = _pair(16, 2, (7, 7))
    x = _input((7, 7, 7, 16))
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), reference(x), atol=ATOL, rtol=0)


@pytest.mark.parametrize("case", ["window 14", "global non-square, batch 2"])
def test_gradients_match_reference(case: str) -> None:
    dim, heads, input_size, shape = ATTENTION_CASES[case]
    reference, fast = _pair(dim, heads, input_size)
    grads = []
    for module in (reference, fast):
        x = _input(shape).requires_grad_(True)
        weight = _input(shape, seed=2)
        (module(x) * weight).sum().backward()
        grads.append({"x": x.grad, **{n: p.grad for n, p in module.named_parameters()}})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-4, rtol=1e-4, msg=name)


def test_float64_takes_the_general_path_and_matches() -> None:
    reference, fast = _pair(32, 2, (8, 8))
    reference.double(), fast.double()
    x = _input((2, 8, 8, 32)).double()
    with torch.no_grad():
        assert not use_cpu_fast_path(x, fast)
        torch.testing.assert_close(fast(x), reference(x), atol=1e-10, rtol=0)


def test_fast_path_only_when_nothing_needs_gradients() -> None:
    module = nn.Linear(2, 2)
    x = torch.zeros(1, 2)
    assert not use_cpu_fast_path(x, module)  # parameters require grad, grad mode on
    with torch.no_grad():
        assert use_cpu_fast_path(x, module)
    with torch.inference_mode():
        assert use_cpu_fast_path(x, module)
        assert not use_cpu_fast_path(x.double(), module)


@pytest.mark.parametrize("grid", [(20, 17), (14, 28)], ids=["padded windows", "no padding"])
def test_block_matches_reference_with_and_without_grad(grid: tuple[int, int], onednn: bool) -> None:
    reference = _randomise(
        Block(48, 3, norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True, window_size=7, input_size=grid), 3
    )
    fast = accelerate_image_encoder(_Holder(copy.deepcopy(reference))).blocks[0]
    assert isinstance(fast, FastBlock) and isinstance(fast.attn, FastAttention)
    x = _input((2, *grid, 48))
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), reference(x), atol=ATOL, rtol=0)
    x_ref, x_fast = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    reference(x_ref).square().sum().backward()
    fast(x_fast).square().sum().backward()
    torch.testing.assert_close(x_fast.grad, x_ref.grad, atol=1e-4, rtol=1e-4)


class _Holder(nn.Module):
    """Just enough of an encoder (a ``blocks`` list) for accelerate_image_encoder."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([block])


def _tiny_encoder() -> ImageEncoderViT:
    torch.manual_seed(0)
    encoder = ImageEncoderViT(
        img_size=1024,
        patch_size=16,
        embed_dim=64,
        depth=4,
        num_heads=2,
        mlp_ratio=4.0,
        out_chans=32,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=14,
        global_attn_indexes=(1, 3),
    )
    return _randomise(encoder, 4)


def test_accelerated_encoder_matches_reference_and_keeps_weights() -> None:
    reference = _tiny_encoder()
    fast = copy.deepcopy(reference)
    keys_before = {k: v.clone() for k, v in fast.state_dict().items()}
    parameters_before = [id(p) for p in fast.parameters()]
    assert accelerate_image_encoder(fast) is fast
    accelerate_image_encoder(fast)  # twice is harmless
    assert [id(p) for p in fast.parameters()] == parameters_before
    after = fast.state_dict()
    assert after.keys() == keys_before.keys()
    assert all(torch.equal(after[k], keys_before[k]) for k in after)
    assert all(isinstance(b, FastBlock) and isinstance(b.attn, FastAttention) for b in fast.blocks)
    image = _input((1, 3, 1024, 1024))
    with torch.inference_mode():
        expected = reference(image)
        torch.testing.assert_close(fast(image), expected, atol=1e-4, rtol=0)
    assert expected.abs().max() > 0.1  # a meaningful comparison, not zeros against zeros


def test_only_plain_segment_anything_modules_are_swapped() -> None:
    class CustomAttention(Attention):
        pass

    block = Block(32, 2, use_rel_pos=True, window_size=7, input_size=(7, 7))
    block.attn.__class__ = CustomAttention
    holder = accelerate_image_encoder(_Holder(block))
    assert type(holder.blocks[0]) is Block and type(holder.blocks[0].attn) is CustomAttention
    with pytest.raises(TypeError, match="Block"):
        accelerate_image_encoder(_Holder(nn.Identity()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_autocast_runs_and_stays_close() -> None:
    reference = _tiny_encoder().cuda()
    fast = accelerate_image_encoder(copy.deepcopy(reference))
    image = _input((1, 3, 1024, 1024)).cuda()
    with torch.no_grad():
        expected = reference(image)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            got = fast(image)
    assert got.isfinite().all()
    assert (got.float() - expected).abs().max() < 0.1 * expected.abs().max()
