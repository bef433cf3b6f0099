"""One model interface for every SAM-family checkpoint.

:func:`open_model` (alias ``load_model``, see :mod:`ultrasam.models.door`) reads a checkpoint
safely, decides its layout from the tensors (UltraSam mmdet, SAM/MedSAM, LiteMedSAM TinyViT), builds a ``segment_anything`` ``Sam`` of
the sizes the tensors imply, loads it strictly, and pairs it with the family's
:class:`ModelSpec`. Builders are registered per layout in :data:`BUILDERS`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import nn

from ultrasam.checkpoints import detect_layout, load_strict, sam_family_from_vit_width
from ultrasam.errors import CheckpointError
from ultrasam.models.spec import FAMILY_SPECS, ModelSpec

log = logging.getLogger(__name__)

FAMILIES = ("ultrasam", "sam_vit_b", "sam_vit_l", "sam_vit_h", "medsam", "litemedsam", "ultrasam_lite")


@dataclass
class SamModel:
    """A built model (``segment_anything``-style ``Sam``) and the rules for feeding it."""

    sam: nn.Module
    spec: ModelSpec
    source: str = ""

    @property
    def device(self) -> torch.device:
        return next(self.sam.parameters()).device

    def to(self, device: str | torch.device) -> "SamModel":
        self.sam.to(device)
        return self


def _build_sam_layout(sd: Mapping[str, torch.Tensor], family: str | None, fast: bool) -> tuple[nn.Module, ModelSpec]:
    from ultrasam.models.sam_vit import build_sam_vit, infer_sam_vit_config

    config = infer_sam_vit_config(sd)
    family = family or sam_family_from_vit_width(config.embed_dim)
    sam = build_sam_vit(config, fast_attention=fast)
    if family == "ultrasam":  # an exported UltraSam: SAM keys, UltraSam's decoder norms
        _use_ultrasam_norm3(sam)
    load_strict(sam, sd)
    return sam, FAMILY_SPECS[family]


def _use_ultrasam_norm3(sam: nn.Module) -> None:
    """mmdet's decoder adds its residual twice around ``norm3``; the key map halves ``lin2`` and
    this quarters the LayerNorm epsilon so SAM's single-residual block computes the same."""
    from ultrasam.keymap import DOUBLE_RESIDUAL_NORM3_EPS

    for layer in sam.mask_decoder.transformer.layers:
        layer.norm3.eps = DOUBLE_RESIDUAL_NORM3_EPS


def _build_ultrasam(sd: Mapping[str, torch.Tensor], family: str | None, fast: bool) -> tuple[nn.Module, ModelSpec]:
    from ultrasam.keymap import ultrasam_to_sam
    from ultrasam.models.sam_vit import build_sam_vit, infer_sam_vit_config

    mapped = ultrasam_to_sam(sd)
    config = infer_sam_vit_config(mapped)
    sam = build_sam_vit(config, fast_attention=fast)
    _use_ultrasam_norm3(sam)
    has_mask_prompt = any(k.startswith("prompt_encoder.mask_downscaling.") for k in mapped)
    load_strict(sam, mapped, allow_missing=() if has_mask_prompt else ("prompt_encoder.mask_downscaling.",))
    spec = FAMILY_SPECS[family or "ultrasam"]
    if not has_mask_prompt:
        log.warning("checkpoint has no mask-prompt encoder (trained without refinement): refinement disabled")
        spec = spec.with_(refine=False, mask_prompt=False)
    return sam, spec


def _build_litemedsam(sd: Mapping[str, torch.Tensor], family: str | None, fast: bool) -> tuple[nn.Module, ModelSpec]:
    from ultrasam.models.litemedsam import build_litemedsam

    return build_litemedsam(sd), FAMILY_SPECS[family or "litemedsam"]


BUILDERS: dict[str, Callable[[Mapping[str, torch.Tensor], str | None, bool], tuple[nn.Module, ModelSpec]]] = {
    "sam_vit": _build_sam_layout,
    "mmdet_ultrasam": _build_ultrasam,
    "litemedsam": _build_litemedsam,
}

_LAYOUT_OF_FAMILY = {
    "ultrasam": {"mmdet_ultrasam", "sam_vit"},
    "sam_vit_b": {"sam_vit"},
    "sam_vit_l": {"sam_vit"},
    "sam_vit_h": {"sam_vit"},
    "medsam": {"sam_vit"},
    "litemedsam": {"litemedsam"},
    "ultrasam_lite": {"litemedsam"},
}


def model_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], family: str | None = None, fast: bool = True, source: str = ""
) -> SamModel:
    """Build the model a state dict describes; ``family`` only chooses the recipe (e.g. MedSAM vs SAM)."""
    layout = detect_layout(state_dict)
    if family is not None:
        if family not in _LAYOUT_OF_FAMILY:
            raise CheckpointError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
        if layout not in _LAYOUT_OF_FAMILY[family]:
            raise CheckpointError(f"checkpoint {source} has the {layout} layout, which is not a {family} checkpoint")
    sam, spec = BUILDERS[layout](state_dict, family, fast)
    sam.eval()
    return SamModel(sam=sam, spec=spec, source=str(source))


from ultrasam.models.door import DEFAULT_WEIGHTS, open_model, resolve_device  # noqa: E402

#: The historical name of :func:`open_model`, kept as the documented Python entry point.
load_model = open_model

__all__ = [
    "DEFAULT_WEIGHTS",
    "FAMILIES",
    "ModelSpec",
    "SamModel",
    "load_model",
    "model_from_state_dict",
    "open_model",
    "resolve_device",
]
