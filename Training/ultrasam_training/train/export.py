"""Plain ``segment_anything``-layout state dicts for the predictor and Slicer.

The training model's parameters already carry SAM key names (``image_encoder.*``,
``prompt_encoder.*``, ``mask_decoder.*``), so exporting means: take the tensors out of the
mmengine container (read without executing anything it names), check the result builds a model
with ``ultrasam.models``, and save them as ``safetensors`` (no pickle) whose header names the
model family, so the file reopens with its own preprocessing recipe (a ViT-b UltraSam would
otherwise look like SAM ViT-b).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from ultrasam.atomic import atomic_write
from ultrasam.checkpoints import checkpoint_meta, extract_state_dict, read_checkpoint, write_safetensors
from ultrasam.models.door import NON_MODEL_PREFIXES
from ultrasam_training.train.errors import TrainingError


def plain_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Model tensors only, contiguous fp32 (or their own dtype if integer) on the CPU."""
    out = {}
    for key, tensor in state_dict.items():
        if key.startswith(NON_MODEL_PREFIXES):
            continue
        tensor = tensor.detach().cpu()
        out[key] = (tensor.float() if tensor.is_floating_point() else tensor).contiguous().clone()
    return out


def save_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    out: str | Path,
    *,
    family: str | None = None,
    metadata: dict | None = None,
    overwrite: bool = False,
    verify: bool = True,
) -> Path:
    """Write ``state_dict`` atomically as safetensors; with ``verify`` first check it builds a model.

    The header's metadata holds ``ultrasam_family`` (the recipe the weights expect) and
    ``metadata`` (provenance: iteration, config, seed, source).
    """
    tensors = plain_state_dict(state_dict)
    if verify:
        from ultrasam.models import model_from_state_dict

        family = model_from_state_dict(tensors, family=family, fast=False, source=str(out)).spec.family
    meta = {"ultrasam_family": family, **(metadata or {})}
    return atomic_write(Path(out), lambda tmp: write_safetensors(tensors, tmp, meta), overwrite=overwrite)


def export_checkpoint(
    checkpoint: str | Path, out: str | Path, *, family: str | None = None, overwrite: bool = False
) -> Path:
    """mmengine checkpoint (or any container) → plain segment_anything-layout ``out``."""
    container = read_checkpoint(checkpoint)
    state_dict = extract_state_dict(container, checkpoint)
    meta = checkpoint_meta(container)
    iteration = meta.get("iter") if isinstance(meta.get("iter"), int) else meta.get("iteration")
    family = family or _family(meta)
    if not any(k.startswith("mask_decoder.") for k in state_dict):
        raise TrainingError(f"{checkpoint} holds no mask decoder tensors: not a training checkpoint of this project")
    return save_state_dict(
        state_dict,
        out,
        family=family,
        overwrite=overwrite,
        metadata={"source": str(checkpoint), "iteration": iteration},
    )


def _family(meta: Mapping) -> str | None:
    family = meta.get("ultrasam_family")
    return family if isinstance(family, str) else None
