"""SAM ViT models (SAM b/l/h, MedSAM, UltraSam) built from hyper-parameters read off the tensors.

Reading sizes from shapes means one code path loads the real checkpoints and the tiny
golden-fixture model alike, with no per-size table to keep in sync.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from typing import Mapping

import torch
from torch import nn

from ultrasam.errors import CheckpointError


@dataclass(frozen=True)
class SamVitConfig:
    """Architecture of a SAM ViT model, as far as the tensors determine it."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int
    img_size: int
    patch_size: int
    mlp_ratio: float
    out_chans: int
    decoder_mlp_dim: int
    decoder_depth: int
    attention_downsample_rate: int
    mask_in_chans: int
    prompt_embed_dim: int = 256
    decoder_heads: int = 8


def _shape(sd: Mapping[str, torch.Tensor], key: str) -> torch.Size:
    try:
        return sd[key].shape
    except KeyError as exc:
        raise CheckpointError(f"checkpoint lacks tensor {key!r} needed to infer the architecture") from exc


def infer_sam_vit_config(sd: Mapping[str, torch.Tensor]) -> SamVitConfig:
    """Derive every size from ``segment_anything``-layout tensors."""
    embed_dim, _, patch, _ = _shape(sd, "image_encoder.patch_embed.proj.weight")
    grid = _shape(sd, "image_encoder.pos_embed")[1]
    blocks = sorted({int(m[1]) for k in sd if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))})
    if not blocks:
        raise CheckpointError("checkpoint has no image_encoder.blocks.* tensors")
    rel_lengths = {i: _shape(sd, f"image_encoder.blocks.{i}.attn.rel_pos_h")[0] for i in blocks}
    head_dim = _shape(sd, f"image_encoder.blocks.{blocks[0]}.attn.rel_pos_h")[1]
    global_length = 2 * grid - 1
    global_idx = tuple(i for i in blocks if rel_lengths[i] == global_length)
    windowed = {rel_lengths[i] for i in blocks if i not in global_idx}
    if len(windowed) > 1:
        raise CheckpointError(f"inconsistent window sizes across blocks: rel_pos lengths {sorted(windowed)}")
    window = (windowed.pop() + 1) // 2 if windowed else 0
    mlp_hidden = _shape(sd, f"image_encoder.blocks.{blocks[0]}.mlp.lin1.weight")[0]
    layers = {int(m[1]) for k in sd if (m := re.match(r"mask_decoder\.transformer\.layers\.(\d+)\.", k))}
    cross_dim = _shape(sd, "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight")[0]
    prompt_dim = _shape(sd, "mask_decoder.iou_token.weight")[1]
    mask_in = (
        sd["prompt_encoder.mask_downscaling.3.weight"].shape[0]
        if "prompt_encoder.mask_downscaling.3.weight" in sd
        else 16
    )
    return SamVitConfig(
        embed_dim=int(embed_dim),
        depth=len(blocks),
        num_heads=int(embed_dim) // int(head_dim),
        global_attn_indexes=global_idx,
        window_size=int(window),
        img_size=int(grid * patch),
        patch_size=int(patch),
        mlp_ratio=mlp_hidden / embed_dim,
        out_chans=int(_shape(sd, "image_encoder.neck.0.weight")[0]),
        decoder_mlp_dim=int(_shape(sd, "mask_decoder.transformer.layers.0.mlp.lin1.weight")[0]),
        decoder_depth=len(layers),
        attention_downsample_rate=int(prompt_dim) // int(cross_dim),
        mask_in_chans=int(mask_in),
        prompt_embed_dim=int(prompt_dim),
    )


def build_sam_vit(config: SamVitConfig, fast_attention: bool = True) -> nn.Module:
    """A ``segment_anything.modeling.Sam`` of the given sizes (random weights)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = config.img_size // config.patch_size
    encoder = ImageEncoderViT(
        depth=config.depth,
        embed_dim=config.embed_dim,
        img_size=config.img_size,
        mlp_ratio=config.mlp_ratio,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        num_heads=config.num_heads,
        patch_size=config.patch_size,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=config.global_attn_indexes,
        window_size=config.window_size,
        out_chans=config.out_chans,
    )
    if fast_attention:
        from ultrasam.models.fast_attention import accelerate_image_encoder

        accelerate_image_encoder(encoder)
    sam = Sam(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(config.img_size, config.img_size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=config.decoder_depth,
                embedding_dim=config.prompt_embed_dim,
                mlp_dim=config.decoder_mlp_dim,
                num_heads=config.decoder_heads,
                attention_downsample_rate=config.attention_downsample_rate,
            ),
            transformer_dim=config.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
    )
    return sam
