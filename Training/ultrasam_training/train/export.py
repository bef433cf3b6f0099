"""Plain ``segment_anything``-layout state dicts for the predictor and Slicer.

The training model's parameters already carry SAM key names (``image_encoder.*``,
``prompt_encoder.*``, ``mask_decoder.*``), so exporting means: take the tensors out of the
mmengine container (read without executing anything it names), check the result builds a model
with ``ultrasam.models``, and save bare tensors that ``torch.load(weights_only=True)`` accepts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch

from ultrasam.atomic import atomic_write
from ultrasam.checkpoints import extract_state_dict, read_checkpoint
from ultrasam_training.train.errors import TrainingError

#: Keys of the training wrapper that are not part of the Sam model.
NON_MODEL_PREFIXES = ("data_preprocessor.",)


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
    state_dict: Mapping[str, torch.Tensor], out: str | Path, *, family: str | None = None,
    metadata: dict | None = None, overwrite: bool = False, verify: bool = True,
) -> Path:
    """Write ``state_dict`` atomically as bare tensors; with ``verify`` first check it builds a model.

    A JSON sidecar (``<out>.json``) records the family the weights expect their images prepared
    for, since a plain SAM-layout file cannot say it (a ViT-b UltraSam looks like SAM ViT-b).
    """
    tensors = plain_state_dict(state_dict)
    if verify:
        from ultrasam.models import model_from_state_dict

        model_from_state_dict(tensors, family=family, fast=False, source=str(out))
    out = Path(out)
    atomic_write(out, lambda tmp: torch.save(tensors, tmp), overwrite=overwrite)
    sidecar = {"family": family, **(metadata or {})}
    atomic_write(out.with_suffix(out.suffix + ".json"), lambda tmp: tmp.write_text(json.dumps(sidecar, indent=1)),
                 overwrite=True)
    return out


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, family: str | None = None,
                      overwrite: bool = False) -> Path:
    """mmengine checkpoint (or any container) → plain segment_anything-layout ``out``."""
    container = read_checkpoint(checkpoint)
    state_dict = extract_state_dict(container, checkpoint)
    meta = container.get("meta", {}) if isinstance(container, dict) else {}
    iteration = meta.get("iter") if isinstance(meta, dict) else None
    if family is None and isinstance(meta, dict):
        family = meta.get("ultrasam_family")
    if not any(k.startswith("mask_decoder.") for k in state_dict):
        raise TrainingError(f"{checkpoint} holds no mask decoder tensors: not a training checkpoint of this project")
    return save_state_dict(state_dict, out, family=family, overwrite=overwrite,
                           metadata={"source": str(checkpoint), "iteration": iteration})


def load_trained_model(checkpoint: str | Path, family: str | None = None, device: str = "cpu"):
    """A :class:`ultrasam.models.SamModel` from ``model_final.pth``, an mmengine training checkpoint
    (``iter_N.pth``: its meta names the family), any library checkpoint, or a weights name."""
    from ultrasam.models import load_model, model_from_state_dict

    from ultrasam_training.train.model import resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    container = read_checkpoint(path)
    if isinstance(container, dict) and "meta" in container and "state_dict" in container:
        meta = container["meta"] if isinstance(container["meta"], dict) else {}
        family = family or meta.get("ultrasam_family")
        state = plain_state_dict(extract_state_dict(container, path))
        return model_from_state_dict(state, family=family, source=str(path)).to(device)
    return load_model(path, family=family, device=device)
