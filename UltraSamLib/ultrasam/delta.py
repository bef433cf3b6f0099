"""A model shipped as the tensors that differ from a registered base model.

UltraSam-Lite is LiteMedSAM with a retrained neck, prompt encoder and mask decoder: shipping only
those tensors keeps the packaged file small (a few MB of ``safetensors``, no pickle) while the base
comes from PyPI as before. :func:`compose` rebuilds the full state dict at load time and refuses a
delta made for another base (the base's sha256 is recorded in the delta's header and must equal the
registry's pin), a delta that names tensors the base lacks, or one whose shapes differ.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping

import torch

from ultrasam.errors import CheckpointError

#: ``format`` value in a delta's metadata.
DELTA_FORMAT = "ultrasam-delta/1"


def is_delta(container: Any) -> bool:
    """Whether a container read by ``read_checkpoint`` is a delta (metadata ``format``)."""
    meta = container.get("meta") if isinstance(container, Mapping) else None
    return isinstance(meta, Mapping) and meta.get("format") == DELTA_FORMAT


def make_delta(base: Mapping[str, torch.Tensor], tuned: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """The tensors of ``tuned`` that are not bit-identical to ``base`` (same keys and shapes required)."""
    missing = sorted(set(base) ^ set(tuned))
    if missing:
        raise CheckpointError(f"the tuned model and its base differ in tensor names, e.g. {missing[:3]}")
    delta: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in tuned.items():
        reference = base[key]
        if value.shape != reference.shape:
            raise CheckpointError(f"{key}: shape {tuple(value.shape)} differs from the base's {tuple(reference.shape)}")
        if value.dtype != reference.dtype or not torch.equal(value, reference):
            delta[key] = value.detach().cpu().contiguous().clone()
    return delta


def compose(
    base: Mapping[str, torch.Tensor], container: Mapping[str, Any], base_sha256: str | None, label: str = "delta"
) -> "OrderedDict[str, torch.Tensor]":
    """``base`` with the delta's tensors in place; refuses a delta made for other weights."""
    meta = container.get("meta") or {}
    recorded = (meta.get("base") or {}).get("sha256") if isinstance(meta.get("base"), Mapping) else None
    if base_sha256 is not None and recorded != base_sha256:
        raise CheckpointError(
            f"{label} was made for base weights with sha256 {recorded}, not the registered base ({base_sha256})"
        )
    merged: OrderedDict[str, torch.Tensor] = OrderedDict(base)
    for key, value in container["state_dict"].items():
        if key not in merged:
            raise CheckpointError(f"{label} holds {key!r}, which its base model does not have")
        if merged[key].shape != value.shape:
            raise CheckpointError(
                f"{label}: {key} has shape {tuple(value.shape)}, the base's is {tuple(merged[key].shape)}"
            )
        merged[key] = value.to(merged[key].dtype)
    return merged
