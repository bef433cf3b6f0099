"""What a model family needs besides its weights: input size, preprocessing and output rules.

The predictor reads these fields and never branches on the family name, so a new family is
one more :class:`ModelSpec` entry.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

PromptKind = Literal["point", "box"]

Resize = Literal["truncate", "round", "squash"]
Normalize = Literal["imagenet", "minmax"]
Postprocess = Literal["binary", "logits"]
Interpolation = Literal["linear", "area", "cubic"]


@dataclass(frozen=True)
class ModelSpec:
    """Preprocessing and post-processing rules of one model family.

    resize: ``truncate`` longest side to ``image_size`` with ``int(side * s)`` (UltraSam/mmdet),
        ``round`` with ``int(side * s + 0.5)`` (SAM ``ResizeLongestSide``), ``squash`` both sides
        to ``image_size`` (MedSAM).
    normalize: ``imagenet`` mean/std on 0-255 RGB, or per-image ``minmax`` to [0, 1].
    postprocess: ``binary`` thresholds the 256² logits before upsampling (UltraSam), ``logits``
        upsamples logits and thresholds at 0 (SAM).
    refine: run UltraSam's second decoder pass by default.
    mask_prompt: the checkpoint has the mask-prompt encoder (refinement and logits feedback).
    prompts: the prompt kinds the weights were trained for; a model trained on boxes only
        (LiteMedSAM) returns empty masks for clicks, so front ends check :meth:`supports`.
    """

    family: str
    image_size: int = 1024
    resize: Resize = "round"
    interpolation: Interpolation = "linear"
    normalize: Normalize = "imagenet"
    postprocess: Postprocess = "logits"
    refine: bool = False
    mask_prompt: bool = True
    prompts: frozenset[PromptKind] = frozenset({"point", "box"})

    def with_(self, **changes: object) -> "ModelSpec":
        return replace(self, **changes)

    def supports(self, kind: PromptKind) -> bool:
        """Whether the weights were trained for ``kind`` prompts."""
        return kind in self.prompts


FAMILY_SPECS: dict[str, ModelSpec] = {
    "ultrasam": ModelSpec("ultrasam", 1024, "truncate", "linear", "imagenet", "binary", refine=True),
    "sam_vit_b": ModelSpec("sam_vit_b"),
    "sam_vit_l": ModelSpec("sam_vit_l"),
    "sam_vit_h": ModelSpec("sam_vit_h"),
    "sam_vit_custom": ModelSpec("sam_vit_custom"),
    "medsam": ModelSpec("medsam", 1024, "squash", "cubic", "minmax", "logits"),
    "litemedsam": ModelSpec("litemedsam", 256, "round", "area", "minmax", "logits", prompts=frozenset({"box"})),
    # LiteMedSAM's preprocessing, retrained with clicks (Training/.../ultrasam_lite_v2.py)
    "ultrasam_lite": ModelSpec("ultrasam_lite", 256, "round", "area", "minmax", "logits"),
}
