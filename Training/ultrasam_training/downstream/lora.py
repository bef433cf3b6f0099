"""LoRA on the encoder's attention projections (protocol §8.4), through Hugging Face ``peft``.

The paper's recipe (mmpretrain ``LoRAModel``): rank 16, alpha 16 (scaling 1), dropout 0.1 on the
LoRA input, targets ``qkv`` in every block; only the LoRA matrices and the task head train. Why
``peft``: it injects into any ``nn.Linear`` by module name (``inject_adapter_in_model``), so it
works unchanged on ``segment_anything``'s ViT (``blocks.N.attn.qkv``) and on LiteMedSAM's TinyViT
(``layers.S.blocks.M.attn.qkv``) without subclassing either; ``lora_B`` starts at zero, so the
adapted encoder starts exactly equal to the base one; the base weights are frozen, never modified.

A ViT encoder must be built without the accelerated inference attention (``fast=False``): that path
reads ``qkv.weight`` directly and would silently skip the LoRA branch.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from ultrasam_training.train.errors import TrainingError


def add_lora(
    encoder: nn.Module, rank: int = 16, alpha: float = 16, dropout: float = 0.1, targets: Sequence[str] = ("qkv",)
) -> nn.Module:
    """Inject LoRA into ``encoder`` in place; afterwards only ``lora_`` parameters require grad."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as exc:  # pragma: no cover - peft is part of the training extras
        raise TrainingError("LoRA needs the peft package: pip install -e '.[training]'") from exc
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none")
    encoder = inject_adapter_in_model(config, encoder)
    injected = [name for name, _ in encoder.named_parameters() if "lora_" in name]
    if not injected:
        raise TrainingError(f"LoRA found no module named {list(targets)} in the encoder")
    for name, parameter in encoder.named_parameters():
        parameter.requires_grad_("lora_" in name)
    return encoder
