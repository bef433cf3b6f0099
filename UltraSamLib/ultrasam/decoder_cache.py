"""SAM's mask decoder with the work that does not depend on the prompt done once per image.

For every click ``segment_anything``'s ``MaskDecoder`` recomputes, on the 4096 image tokens, the
dense positional encoding, the image embedding plus the no-mask embedding, their flattening, and
— in the first two-way block, where the image side has not yet seen any prompt — three linear
projections (token→image keys and values, image→token queries). :class:`ImageSide` keeps those
per image; :func:`decode` then runs the same arithmetic as ``MaskDecoder.forward`` for a prompt
without a mask input. With a mask input the dense embedding depends on the prompt and the
predictor uses the decoder as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class ImageSide:
    """Prompt-independent tensors of one image embedding (batch 1)."""

    keys: Tensor  # (1, HW, C): image embedding + no-mask dense embedding, token-major
    pe: Tensor  # (1, HW, C): dense positional encoding, token-major
    k0: Tensor  # (1, heads, HW, c): first block, token→image keys
    v0: Tensor  # (1, heads, HW, c): first block, token→image values
    q0: Tensor  # (1, heads, HW, c): first block, image→token queries
    hw: tuple[int, int]


def supports(sam: nn.Module) -> bool:
    """Whether ``sam`` has segment_anything's decoder layout (every family here does)."""
    decoder = getattr(sam, "mask_decoder", None)
    transformer = getattr(decoder, "transformer", None)
    layers = getattr(transformer, "layers", None)
    return bool(layers) and layers[0].skip_first_layer_pe and hasattr(transformer, "final_attn_token_to_image")


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


def image_side(sam: nn.Module, features: Tensor) -> ImageSide:
    """The prompt-independent part of decoding ``features`` (``[1, C, h, w]``)."""
    prompt_encoder, transformer = sam.prompt_encoder, sam.mask_decoder.transformer
    _, c, h, w = features.shape
    dense = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
    keys = (features + dense).flatten(2).permute(0, 2, 1).contiguous()
    pe = prompt_encoder.get_dense_pe().flatten(2).permute(0, 2, 1).contiguous()
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


def _first_block(block: nn.Module, side: ImageSide, queries: Tensor, query_pe: Tensor) -> tuple[Tensor, Tensor]:
    """``TwoWayAttentionBlock.forward`` (first block: no PE in self-attention) with cached image terms."""
    b = queries.shape[0]
    queries = block.norm1(block.self_attn(q=queries, k=queries, v=queries))
    to_image = block.cross_attn_token_to_image
    q = _heads(to_image.q_proj(queries + query_pe), to_image.num_heads)
    queries = block.norm2(queries + _attend(to_image, q, side.k0.expand(b, -1, -1, -1), side.v0.expand(b, -1, -1, -1)))
    queries = block.norm3(queries + block.mlp(queries))
    to_token = block.cross_attn_image_to_token
    k = _heads(to_token.k_proj(queries + query_pe), to_token.num_heads)
    v = _heads(to_token.v_proj(queries), to_token.num_heads)
    keys = block.norm4(side.keys + _attend(to_token, side.q0.expand(b, -1, -1, -1), k, v))
    return queries, keys


def decode(sam: nn.Module, side: ImageSide, sparse: Tensor, multimask: bool) -> tuple[Tensor, Tensor]:
    """``sam.mask_decoder(...)`` for prompts without a mask input: low-res logits and IoU."""
    decoder, transformer = sam.mask_decoder, sam.mask_decoder.transformer
    b = sparse.shape[0]
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat((output_tokens.unsqueeze(0).expand(b, -1, -1), sparse), dim=1)
    queries, keys = _first_block(transformer.layers[0], side, tokens, tokens)
    pe = side.pe.expand(b, -1, -1)
    for block in transformer.layers[1:]:
        queries, keys = block(queries=queries, keys=keys, query_pe=tokens, key_pe=pe)
    final = transformer.final_attn_token_to_image
    queries = transformer.norm_final_attn(queries + final(q=queries + tokens, k=keys + pe, v=keys))
    h, w = side.hw
    src = keys.transpose(1, 2).reshape(b, -1, h, w)
    upscaled = decoder.output_upscaling(src)
    count = decoder.num_mask_tokens
    hyper = torch.stack([decoder.output_hypernetworks_mlps[i](queries[:, 1 + i, :]) for i in range(count)], dim=1)
    _, c, uh, uw = upscaled.shape
    masks = (hyper @ upscaled.reshape(b, c, uh * uw)).reshape(b, -1, uh, uw)
    iou = decoder.iou_prediction_head(queries[:, 0, :])
    chosen = slice(1, None) if multimask else slice(0, 1)
    return masks[:, chosen], iou[:, chosen]
