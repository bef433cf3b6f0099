"""The UltraSam (mmdet) → ``segment_anything`` key map (ULTRASAM_PROTOCOL §2.2).

Every tensor is renamed or split; one is rescaled. The original's decoder MLP adds its input
twice (mmcv ``FFN`` with ``add_identity`` plus the layer's own residual), so ``norm3`` sees
``2q + mlp(q)``. LayerNorm is scale invariant, so halving ``mlp.lin2`` reproduces that inside a
stock ``TwoWayTransformer``; the model builder also sets ``norm3.eps`` to a quarter
(:data:`DOUBLE_RESIDUAL_NORM3_EPS`), which makes the match exact.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Mapping

import torch

from ultrasam.errors import CheckpointError

DOUBLE_RESIDUAL_NORM3_EPS = 1e-5 / 4

# label_embedding rows → SAM tensors (EmbeddingIndex order of the original)
_LABEL_ROWS = (
    ("prompt_encoder.no_mask_embed.weight", 0, 1),
    ("prompt_encoder.point_embeddings.0.weight", 1, 2),
    ("prompt_encoder.point_embeddings.1.weight", 2, 3),
    ("prompt_encoder.point_embeddings.2.weight", 3, 4),
    ("prompt_encoder.point_embeddings.3.weight", 4, 5),
    ("prompt_encoder.not_a_point_embed.weight", 5, 6),
    ("mask_decoder.mask_tokens.weight", 6, 10),
    ("mask_decoder.iou_token.weight", 10, 11),
)

_BACKBONE_RENAMES = (
    (r"^backbone\.patch_embed\.projection\.", "image_encoder.patch_embed.proj."),
    (r"^backbone\.pos_embed$", "image_encoder.pos_embed"),
    (r"^backbone\.layers\.(\d+)\.ln1\.", r"image_encoder.blocks.\1.norm1."),
    (r"^backbone\.layers\.(\d+)\.ln2\.", r"image_encoder.blocks.\1.norm2."),
    (r"^backbone\.layers\.(\d+)\.attn\.", r"image_encoder.blocks.\1.attn."),
    (r"^backbone\.layers\.(\d+)\.ffn\.layers\.0\.0\.", r"image_encoder.blocks.\1.mlp.lin1."),
    (r"^backbone\.layers\.(\d+)\.ffn\.layers\.1\.", r"image_encoder.blocks.\1.mlp.lin2."),
    (r"^backbone\.channel_reduction\.", "image_encoder.neck."),
)

_HEAD_RENAMES = (
    (r"^bbox_head\.", "mask_decoder."),
    (r"^prompt_encoder\.pe_layer\.", "prompt_encoder.pe_layer."),
    (r"^prompt_encoder\.mask_downscaling\.", "prompt_encoder.mask_downscaling."),
    (r"^decoder\.post_norm\.", "mask_decoder.transformer.norm_final_attn."),
    (r"^decoder\.layers\.(\d+)\.(norm\d)\.", r"mask_decoder.transformer.layers.\1.\2."),
    (r"^decoder\.layers\.(\d+)\.mlp\.layers\.0\.0\.", r"mask_decoder.transformer.layers.\1.mlp.lin1."),
    (r"^decoder\.layers\.(\d+)\.mlp\.layers\.1\.", r"mask_decoder.transformer.layers.\1.mlp.lin2."),
)

_ATTN = re.compile(
    r"^decoder\.(?P<where>layers\.\d+\.(?:self_attn|cross_attn_token_to_image|cross_attn_image_to_token)"
    r"|final_attn_token_to_image)\.attn\.(?P<param>q_proj_weight|k_proj_weight|v_proj_weight|in_proj_bias"
    r"|out_proj\.weight|out_proj\.bias)$"
)


def _rename(key: str, rules: tuple[tuple[str, str], ...]) -> str | None:
    for pattern, replacement in rules:
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    return None


def ultrasam_to_sam(
    state_dict: Mapping[str, torch.Tensor], halve_decoder_mlp: bool = True
) -> "OrderedDict[str, torch.Tensor]":
    """Map an UltraSam mmdet state dict onto ``segment_anything.Sam`` keys.

    Raises :class:`CheckpointError` naming any key the map does not know, so a variant checkpoint
    (LoRA, Med-SA adapters) is reported instead of silently half-loaded.
    """
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    unknown = []
    for key, tensor in state_dict.items():
        if key == "prompt_encoder.label_encoder.label_embedding.weight":
            if tensor.shape[0] != 11:
                raise CheckpointError(f"label_embedding has {tensor.shape[0]} rows, expected 11")
            for target, start, stop in _LABEL_ROWS:
                out[target] = tensor[start:stop].clone()
            continue
        match = _ATTN.match(key)
        if match:
            prefix = "mask_decoder.transformer." + match["where"]
            param = match["param"]
            if param == "in_proj_bias":
                q, k, v = tensor.chunk(3)
                out[f"{prefix}.q_proj.bias"], out[f"{prefix}.k_proj.bias"], out[f"{prefix}.v_proj.bias"] = q, k, v
            elif param.endswith("_proj_weight"):
                out[f"{prefix}.{param[0]}_proj.weight"] = tensor
            else:
                out[f"{prefix}.{param}"] = tensor
            continue
        new = _rename(key, _BACKBONE_RENAMES) or _rename(key, _HEAD_RENAMES)
        if new is None:
            unknown.append(key)
            continue
        if halve_decoder_mlp and re.match(r"^mask_decoder\.transformer\.layers\.\d+\.mlp\.lin2\.", new):
            tensor = tensor * 0.5
        out[new] = tensor
    if unknown:
        listed = ", ".join(unknown[:6]) + (" ..." if len(unknown) > 6 else "")
        raise CheckpointError(
            f"{len(unknown)} UltraSam checkpoint keys have no segment_anything equivalent "
            f"(LoRA / Med-SA adapter checkpoints are not supported): {listed}"
        )
    return out
