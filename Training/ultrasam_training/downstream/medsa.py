"""Med-SA adapters in every attention block of the encoder (protocol §8.4, ``MED_SA.py``).

Each block gets:

* ``space_adapter``: FFN ``dim → dim/4 → dim`` (GELU) **with** its identity, applied to the
  attention output (inside the windows, where the block computes attention);
* ``mlp_adapter``: FFN ``dim → dim/4 → dim`` (GELU) without identity, on the block's normalised
  MLP input, scaled by 0.5 and added to the MLP output.

Adapters keep PyTorch's default (non-zero) initialisation, as the original (mmcv defaults), so the
adapted encoder differs from the base one from step 0. ``identity_init=True`` zeroes each adapter's
output layer instead, so the adapted encoder starts equal to the base one (as LoRA's ``B = 0``): what
linear probing then fine-tuning needs, since a head trained on the base features meets other features
otherwise (with default init the first steps' focal loss read 1.9–3.3 against the probe's 0.08). Trainable: the adapters, the last
``trainable_last_blocks`` blocks (the original's ``frozen_stages=11`` of 12) and the task head.

Works on ``segment_anything`` ViT blocks (``attn``, ``norm2`` then ``mlp``) and TinyViT blocks
(``attn``; ``mlp`` normalises its own input). A ViT must be built with ``fast=False``: the
accelerated block computes attention and MLP inline and would bypass the adapters.
"""

from __future__ import annotations

from torch import Tensor, nn

from ultrasam_training.train.errors import TrainingError


class Adapter(nn.Module):
    """``fc2(gelu(fc1(x)))``, plus ``x`` when ``skip``."""

    def __init__(self, dim: int, ratio: float = 0.25, skip: bool = True, identity_init: bool = False) -> None:
        super().__init__()
        hidden = max(1, int(dim * ratio))
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.skip = skip
        if identity_init:  # output 0: the identity with skip, nothing added without
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)

    def forward(self, x: Tensor) -> Tensor:
        y = self.fc2(self.act(self.fc1(x)))
        return x + y if self.skip else y


class AdaptedAttention(nn.Module):
    """The block's attention followed by the space adapter (token-wise, so any layout works)."""

    def __init__(self, attn: nn.Module, dim: int, ratio: float, identity_init: bool = False) -> None:
        super().__init__()
        self.attn = attn
        self.space_adapter = Adapter(dim, ratio, skip=True, identity_init=identity_init)

    def forward(self, x: Tensor) -> Tensor:
        return self.space_adapter(self.attn(x))


class AdaptedMLP(nn.Module):
    """``mlp(x) + scale * mlp_adapter(norm(x))``; ``norm`` is the MLP's own pre-norm when it has one."""

    def __init__(self, mlp: nn.Module, dim: int, ratio: float, scale: float, identity_init: bool = False) -> None:
        super().__init__()
        self.mlp = mlp
        self.mlp_adapter = Adapter(dim, ratio, skip=False, identity_init=identity_init)
        self.scale = scale

    @property
    def fc1(self) -> nn.Module:  # TinyViT blocks size their banded MLP path by it
        return self.mlp.fc1

    def forward(self, x: Tensor) -> Tensor:
        norm = getattr(self.mlp, "norm", None)
        return self.mlp(x) + self.scale * self.mlp_adapter(norm(x) if norm is not None else x)


def attention_blocks(encoder: nn.Module) -> list[nn.Module]:
    """Every block with ``attn`` and ``mlp``, in forward order."""
    blocks = [m for m in encoder.modules() if hasattr(m, "attn") and hasattr(m, "mlp")]
    if not blocks:
        raise TrainingError("Med-SA: the encoder has no attention blocks")
    return blocks


def _width(block: nn.Module) -> int:
    for module in (getattr(block, "norm1", None), getattr(block.attn, "norm", None)):
        if isinstance(module, nn.LayerNorm):
            return int(module.normalized_shape[0])
    return int(block.attn.proj.out_features)


def add_medsa(
    encoder: nn.Module,
    ratio: float = 0.25,
    scale: float = 0.5,
    trainable_last_blocks: int = 1,
    identity_init: bool = False,
) -> nn.Module:
    """Insert the adapters in place; afterwards only adapters and the last blocks require grad."""
    blocks = attention_blocks(encoder)
    for block in blocks:
        dim = _width(block)
        block.attn = AdaptedAttention(block.attn, dim, ratio, identity_init)
        block.mlp = AdaptedMLP(block.mlp, dim, ratio, scale, identity_init)
    encoder.requires_grad_(False)
    for name, parameter in encoder.named_parameters():
        if "_adapter" in name:
            parameter.requires_grad_(True)
    for block in blocks[len(blocks) - trainable_last_blocks :] if trainable_last_blocks > 0 else []:
        block.requires_grad_(True)
    return encoder
