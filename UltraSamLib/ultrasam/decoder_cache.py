"""SAM's mask decoder with the work that does not depend on the prompt done once per image.

For every click ``segment_anything``'s ``MaskDecoder`` recomputes, on the 4096 image tokens, the
dense positional encoding, the image embedding plus the no-mask embedding, their flattening, and
— in the first two-way block, where the image side has not yet seen any prompt — three linear
projections (token→image keys and values, image→token queries). :class:`ImageSide` keeps those
per image; :func:`decode` then runs the same arithmetic as ``MaskDecoder.forward``. With a mask
input the dense embedding depends on the prompt: :func:`image_side` with ``dense`` makes that
prompt's keys only, the first block then runs low-rank like the later ones, and only the positional
encoding (:func:`dense_pe`, the same for every image) is reused.

The mask head runs token-major: SAM's ``output_upscaling`` (two 2×2 stride-2 transposed
convolutions around a channel LayerNorm) maps each image token to its own 4×4 patch, so it is two
matrix products, a native ``layer_norm`` and GELUs on ``(tokens, channels)`` rows, and the
hypernetwork product is taken before the one rearrangement into an image — for the returned mask
tokens only. In NCHW the transposed convolutions, the hand-written channel LayerNorm and the copies
between them took ~3/4 of a ViT-b click on 2 CPU cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass(frozen=True)
class ImageSide:
    """Prompt-independent tensors of one image embedding (batch 1), or one mask prompt's keys."""

    keys: Tensor  # (1 | B, HW, C): image embedding + dense embedding, token-major
    pe: Tensor  # (1, HW, C): dense positional encoding, token-major
    hw: tuple[int, int]
    # First block's image-side projections, made once per image (None for a mask prompt's own keys):
    k0: Tensor | None = None  # (1, heads, HW, c): token→image keys
    v0: Tensor | None = None  # (1, heads, HW, c): token→image values
    q0: Tensor | None = None  # (1, heads, HW, c): image→token queries


def supports(sam: nn.Module) -> bool:
    """Whether ``sam`` has segment_anything's decoder layout (every family here does)."""
    decoder = getattr(sam, "mask_decoder", None)
    transformer = getattr(decoder, "transformer", None)
    layers = getattr(transformer, "layers", None)
    return (
        bool(layers)
        and layers[0].skip_first_layer_pe
        and not any(layer.skip_first_layer_pe for layer in layers[1:])
        and hasattr(transformer, "final_attn_token_to_image")
    )


def _token_major_upscaling(decoder: nn.Module) -> bool:
    """Whether ``output_upscaling`` is SAM's (2×2/2 transposed conv, LayerNorm2d, act, 2×2/2, act)."""
    stages = list(getattr(decoder, "output_upscaling", []))
    if len(stages) != 5:
        return False
    up1, norm, _, up2, _ = stages

    def patchwise(conv: nn.Module) -> bool:
        return (
            isinstance(conv, nn.ConvTranspose2d)
            and conv.kernel_size == (2, 2)
            and conv.stride == (2, 2)
            and conv.padding == (0, 0)
            and conv.output_padding == (0, 0)
            and conv.dilation == (1, 1)
            and conv.groups == 1
            and conv.bias is not None
        )

    return patchwise(up1) and patchwise(up2) and all(hasattr(norm, a) for a in ("weight", "bias", "eps"))


def _patch_product(x: Tensor, conv: nn.ConvTranspose2d) -> Tensor:
    """A 2×2 stride-2 transposed convolution on ``(rows, C_in)`` → ``(rows * 4, C_out)``, rows (…, a, b)."""
    c_in, c_out = conv.in_channels, conv.out_channels
    weight = conv.weight.permute(0, 2, 3, 1).reshape(c_in, 4 * c_out)  # columns (a, b, C_out)
    return torch.addmm(conv.bias.repeat(4), x, weight).reshape(-1, c_out)


def upscaled_masks(decoder: nn.Module, keys: Tensor, hyper: Tensor, hw: tuple[int, int]) -> Tensor:
    """``hyper @ output_upscaling(keys)`` as ``MaskDecoder.predict_masks`` computes it, token-major.

    ``keys``: ``(b, h*w, C)`` image tokens after the transformer; ``hyper``: ``(b, n, C/8)`` for the
    mask tokens wanted. Returns ``(b, n, 4h, 4w)`` logits."""
    b, _, c = keys.shape
    h, w = hw
    if not _token_major_upscaling(decoder):
        src = keys.transpose(1, 2).reshape(b, c, h, w)
        upscaled = decoder.output_upscaling(src)
        _, c_up, uh, uw = upscaled.shape
        return (hyper @ upscaled.reshape(b, c_up, uh * uw)).reshape(b, -1, uh, uw)
    up1, norm, act1, up2, act2 = decoder.output_upscaling
    x = _patch_product(keys.reshape(-1, c), up1)  # rows (b, i, j, a, b)
    x = act1(F.layer_norm(x, (up1.out_channels,), norm.weight, norm.bias, norm.eps))
    x = act2(_patch_product(x, up2))  # rows (b, i, j, a, b, a2, b2)
    n = hyper.shape[1]
    masks = torch.bmm(x.reshape(b, -1, up2.out_channels), hyper.transpose(1, 2))  # (b, rows, n)
    masks = masks.reshape(b, h, w, 2, 2, 2, 2, n).permute(0, 7, 1, 3, 5, 2, 4, 6)  # (b, n, i, a, a2, j, b, b2)
    return masks.reshape(b, n, 4 * h, 4 * w)


def _heads(x: Tensor, heads: int) -> Tensor:
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(1, 2)


def _merge(x: Tensor) -> Tensor:
    b, h, n, c = x.shape
    return x.transpose(1, 2).reshape(b, n, h * c)


def _attend(attention: nn.Module, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """``segment_anything.modeling.transformer.Attention.forward`` on already projected heads."""
    scores = torch.softmax(q @ k.permute(0, 1, 3, 2) / math.sqrt(q.shape[-1]), dim=-1)
    return attention.out_proj(_merge(scores @ v))


def dense_pe(sam: nn.Module) -> Tensor:
    """The prompt encoder's dense positional encoding, token-major ``(1, HW, C)``: the same for every image."""
    return sam.prompt_encoder.get_dense_pe().flatten(2).permute(0, 2, 1).contiguous()


def image_side(
    sam: nn.Module, features: Tensor, dense: Tensor | None = None, pe: Tensor | None = None
) -> ImageSide:
    """The prompt-independent part of decoding ``features`` (``[1, C, h, w]``).

    ``dense``: a mask prompt's dense embedding ``[B, C, h, w]`` instead of the no-mask one; the result
    then belongs to that prompt only and has its keys, not the first block's projections (used once,
    they are cheaper low-rank). ``pe``: :func:`dense_pe` already made."""
    prompt_encoder, transformer = sam.prompt_encoder, sam.mask_decoder.transformer
    _, c, h, w = features.shape
    if pe is None:
        pe = dense_pe(sam)
    if dense is not None:
        return ImageSide(keys=(features + dense).flatten(2).permute(0, 2, 1).contiguous(), pe=pe, hw=(h, w))
    dense = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
    keys = (features + dense).flatten(2).permute(0, 2, 1).contiguous()
    first = transformer.layers[0]
    to_image, to_token = first.cross_attn_token_to_image, first.cross_attn_image_to_token
    keyed = keys + pe
    return ImageSide(
        keys=keys,
        pe=pe,
        k0=_heads(to_image.k_proj(keyed), to_image.num_heads),
        v0=_heads(to_image.v_proj(keys), to_image.num_heads),
        q0=_heads(to_token.q_proj(keyed), to_token.num_heads),
        hw=(h, w),
    )


def _token_to_image(attention: nn.Module, q_tokens: Tensor, image_k: Tensor, image_v: Tensor) -> Tensor:
    """``Attention(q=q_tokens, k=image_k, v=image_v)`` without projecting the image side.

    With n ≪ HW prompt tokens, per head ``q Wk (X)ᵀ`` and ``(A X) Wvᵀ`` cost n·C·HW each instead of
    projecting all HW image tokens (HW·C·d per head); ``q·bk`` is the same for every key of a row,
    so it cancels in the softmax, and ``A bv = bv`` as each row of ``A`` sums to 1."""
    heads = attention.num_heads
    q = _heads(attention.q_proj(q_tokens), heads)  # (b, H, n, d)
    b, _, n, d = q.shape
    c = image_k.shape[-1]
    qk = torch.einsum("bhnd,hdc->bhnc", q, attention.k_proj.weight.view(heads, d, c)).reshape(b, heads * n, c)
    weights = torch.softmax((qk @ image_k.transpose(1, 2)) / math.sqrt(d), dim=-1)  # (b, H*n, HW)
    pooled = (weights @ image_v).view(b, heads, n, c)
    values = torch.einsum("bhnc,hdc->bhnd", pooled, attention.v_proj.weight.view(heads, d, c))
    values = values + attention.v_proj.bias.view(heads, 1, d)
    return attention.out_proj(_merge(values))


def _image_to_token(
    attention: nn.Module, k_tokens: Tensor, v_tokens: Tensor, *, image: Tensor | None = None, q: Tensor | None = None
) -> Tensor:
    """``Attention(q=image, k=k_tokens, v=v_tokens)`` (``q``: the image side already projected).

    The image side is never projected in or out: scores are ``X (Wqᵀ Kᵀ) + bq·Kᵀ`` and the output
    ``Aᵀ (V Woᵀ) + bo`` per head, n·C·HW each. The softmax runs over the n tokens laid out before the
    HW image tokens, where PyTorch vectorises along HW (along a last axis of n ≈ 7 it is ~10× slower)."""
    heads = attention.num_heads
    k = _heads(attention.k_proj(k_tokens), heads)  # (b, H, n, d)
    v = _heads(attention.v_proj(v_tokens), heads)
    b, _, n, d = k.shape
    if q is not None:  # (b | 1, H, HW, d)
        scores = k @ q.transpose(-1, -2)  # (b, H, n, HW)
    else:
        c = image.shape[-1]
        kq = torch.einsum("bhnd,hdc->bhnc", k, attention.q_proj.weight.view(heads, d, c)).reshape(b, heads * n, c)
        shift = torch.einsum("bhnd,hd->bhn", k, attention.q_proj.bias.view(heads, d))
        scores = (kq @ image.transpose(1, 2)).view(b, heads, n, -1) + shift[..., None]
    weights = torch.softmax(scores / math.sqrt(d), dim=2)  # over the tokens
    out_weight = attention.out_proj.weight  # (C, H*d)
    c = out_weight.shape[0]
    projected = torch.einsum("bhnd,chd->bhnc", v, out_weight.view(c, heads, d)).reshape(b, heads * n, c)
    hw = weights.shape[-1]
    return weights.reshape(b, heads * n, hw).transpose(1, 2) @ projected + attention.out_proj.bias


def _first_block(block: nn.Module, side: ImageSide, queries: Tensor, query_pe: Tensor) -> tuple[Tensor, Tensor]:
    """``TwoWayAttentionBlock.forward`` (first block: no PE in self-attention) with the image side's
    cached projections, or low-rank when ``side`` is a mask prompt's own keys."""
    b = queries.shape[0]
    queries = block.norm1(block.self_attn(q=queries, k=queries, v=queries))
    to_image, to_token = block.cross_attn_token_to_image, block.cross_attn_image_to_token
    if side.k0 is None:
        keyed = side.keys + side.pe
        queries = block.norm2(queries + _token_to_image(to_image, queries + query_pe, keyed, side.keys))
        queries = block.norm3(queries + block.mlp(queries))
        attended = _image_to_token(to_token, queries + query_pe, queries, image=keyed)
    else:
        q = _heads(to_image.q_proj(queries + query_pe), to_image.num_heads)
        k0, v0 = side.k0.expand(b, -1, -1, -1), side.v0.expand(b, -1, -1, -1)
        queries = block.norm2(queries + _attend(to_image, q, k0, v0))
        queries = block.norm3(queries + block.mlp(queries))
        attended = _image_to_token(to_token, queries + query_pe, queries, q=side.q0)
    return queries, block.norm4(side.keys + attended)


def _block(block: nn.Module, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor) -> tuple[Tensor, Tensor]:
    """``TwoWayAttentionBlock.forward`` (a later block) with both cross attentions low-rank."""
    q = queries + query_pe
    queries = block.norm1(queries + block.self_attn(q=q, k=q, v=queries))
    keyed = keys + key_pe
    queries = block.norm2(queries + _token_to_image(block.cross_attn_token_to_image, queries + query_pe, keyed, keys))
    queries = block.norm3(queries + block.mlp(queries))
    attended = _image_to_token(block.cross_attn_image_to_token, queries + query_pe, queries, image=keyed)
    return queries, block.norm4(keys + attended)


def decode(sam: nn.Module, side: ImageSide, sparse: Tensor, multimask: bool) -> tuple[Tensor, Tensor]:
    """``sam.mask_decoder(...)``: low-res logits and IoU of the returned masks (``side`` made with
    the prompt's dense embedding when it has a mask input)."""
    decoder, transformer = sam.mask_decoder, sam.mask_decoder.transformer
    b = sparse.shape[0]
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat((output_tokens.unsqueeze(0).expand(b, -1, -1), sparse), dim=1)
    queries, keys = _first_block(transformer.layers[0], side, tokens, tokens)
    pe = side.pe.expand(b, -1, -1)
    for block in transformer.layers[1:]:
        queries, keys = _block(block, queries, keys, tokens, pe)
    final = _token_to_image(transformer.final_attn_token_to_image, queries + tokens, keys + pe, keys)
    queries = transformer.norm_final_attn(queries + final)
    wanted = range(1, decoder.num_mask_tokens) if multimask else range(1)  # only the masks returned
    hyper = torch.stack([decoder.output_hypernetworks_mlps[i](queries[:, 1 + i, :]) for i in wanted], dim=1)
    masks = upscaled_masks(decoder, keys, hyper, side.hw)
    iou = decoder.iou_prediction_head(queries[:, 0, :])
    return masks, iou[:, wanted.start : wanted.stop]
