"""segment_anything's prompt encoder and mask decoder applied to a training batch.

A batch mixes point and box instances from several images. ``segment_anything``'s
``PromptEncoder.forward`` takes one prompt type per call and its ``MaskDecoder`` one image per
call, so this module embeds mixed prompts in one go (the same sums ``_embed_points`` and
``_embed_boxes`` compute) and runs the decoder image by image.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def embed_sparse(prompt_encoder: nn.Module, coords: Tensor, labels: Tensor) -> Tensor:
    """``(N, T, 2)`` segment_anything coordinates and ``(N, T)`` labels → ``(N, T, C)`` sparse embeddings.

    Labels: −1 padding ("not a point", positional encoding zeroed), 0 negative, 1 positive point,
    2 / 3 box corners A / B. Like segment_anything, +0.5 is added to the coordinates here.
    """
    encoding = prompt_encoder.pe_layer.forward_with_coords(coords.float() + 0.5, prompt_encoder.input_image_size)
    learned = torch.cat(
        [prompt_encoder.not_a_point_embed.weight] + [e.weight for e in prompt_encoder.point_embeddings], dim=0
    )  # row = label + 1
    padding = (labels == -1)[..., None]
    return torch.where(padding, torch.zeros_like(encoding), encoding) + learned[labels + 1]


def no_mask_dense(prompt_encoder: nn.Module, count: int) -> Tensor:
    """The dense embedding of "no mask prompt", broadcast to ``count`` instances."""
    h, w = prompt_encoder.image_embedding_size
    return prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(count, -1, h, w)


def mask_dense(prompt_encoder: nn.Module, mask_logits: Tensor) -> Tensor:
    """The dense embedding of ``(N, 1, 256, 256)`` mask logits used as a prompt."""
    return prompt_encoder.mask_downscaling(mask_logits)


def decode_all_tokens(
    mask_decoder: nn.Module,
    image_pe: Tensor,
    features: Tensor,
    counts: list[int],
    sparse: Tensor,
    dense: Tensor,
) -> tuple[Tensor, Tensor]:
    """Logits ``(N, 4, 256, 256)`` and IoU predictions ``(N, 4)`` of every mask token.

    ``features`` ``(B, C, h, w)``; instances are grouped by image, ``counts[b]`` of them for image b.
    Token 0 is the single-mask output, tokens 1–3 the multimask outputs.
    """
    logits, ious = [], []
    start = 0
    for b, count in enumerate(counts):
        if count == 0:
            continue
        stop = start + count
        masks, iou = mask_decoder.predict_masks(
            image_embeddings=features[b : b + 1],
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse[start:stop],
            dense_prompt_embeddings=dense[start:stop],
        )
        logits.append(masks)
        ious.append(iou)
        start = stop
    return torch.cat(logits), torch.cat(ious)
