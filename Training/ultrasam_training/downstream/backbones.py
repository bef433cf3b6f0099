"""The encoder of a downstream model, built for one variant: frozen, full, LoRA, Med-SA, scratch, ResNet-50.

One function decides, from the config, which weights are loaded, which attention path is used and
which parameters train, so every task (classification, segmentation) gets its variants the same way.

| variant | weights | trains |
|---|---|---|
| ``linear`` / ``frozen`` | checkpoint | nothing in the encoder |
| ``finetune`` | checkpoint | everything |
| ``lora`` | checkpoint + LoRA (rank 16) | LoRA only |
| ``medsa`` | checkpoint + Med-SA adapters | adapters and the last block |
| ``scratch`` | random (same architecture) | everything |

``resnet50`` (the ImageNet baseline) is a separate backbone: torchvision's ResNet-50 with weights
read from a local file only (nothing can be downloaded here); without one the run stops with a
message saying where to put the file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from ultrasam_training.downstream.encoders import EncoderFeatures, EncoderOutput, reinitialise
from ultrasam_training.train.errors import TrainingError

log = logging.getLogger(__name__)

VARIANTS = ("linear", "frozen", "finetune", "lora", "medsa", "scratch")
RESNET50_FILES = ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth", "resnet50-19c8e357.pth")


class MissingWeights(TrainingError):
    """A baseline whose weights are not on this machine (the run is skipped, not failed)."""


def build_encoder_features(
    source: str,
    family: str | None,
    variant: str,
    lora: dict | None = None,
    medsa: dict | None = None,
    seed: int = 0,
    freeze_batchnorm: bool = True,
):
    """(``EncoderFeatures``, model spec) of ``source`` prepared for ``variant``."""
    from ultrasam_training.downstream.encoders import open_encoder

    if variant not in VARIANTS:
        raise TrainingError(f"variant must be one of {VARIANTS}, not {variant!r}")
    model = open_encoder(source, family=family, fast=variant not in ("lora", "medsa"))
    encoder = model.sam.image_encoder
    if hasattr(encoder, "freeze_batchnorm"):
        # TinyViT: batches of a few images give useless BatchNorm statistics; keep the pretrained ones.
        encoder.freeze_batchnorm = freeze_batchnorm
    if variant == "scratch":
        reinitialise(encoder, seed)
    if variant in ("linear", "frozen"):
        encoder.requires_grad_(False)
    elif variant == "lora":
        from ultrasam_training.downstream.lora import add_lora

        add_lora(encoder, **(lora or {}))
    elif variant == "medsa":
        from ultrasam_training.downstream.medsa import add_medsa

        add_medsa(encoder, **(medsa or {}))
    return EncoderFeatures(encoder), model.spec


def find_resnet50_weights(path: str | None = None) -> Path:
    """The ImageNet ResNet-50 weights file: ``path``, else torchvision's cache; never downloaded."""
    candidates = [Path(path).expanduser()] if path else []
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    candidates += [hub / name for name in RESNET50_FILES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise MissingWeights(
        "ImageNet ResNet-50 weights not found (looked at " + ", ".join(map(str, candidates)) + "); they cannot be "
        "downloaded here: copy torchvision's resnet50-0676ba61.pth there, or pass model.resnet_weights=PATH"
    )


class ResNet50Features(nn.Module):
    """torchvision ResNet-50 up to ``layer4``, with the interface of :class:`EncoderFeatures`."""

    def __init__(self, weights: str | None, variant: str = "finetune", seed: int = 0) -> None:
        super().__init__()
        from torchvision.models import resnet50

        from ultrasam.checkpoints import extract_state_dict, read_checkpoint

        net = resnet50()
        if variant == "scratch":
            reinitialise(net, seed)
        else:
            path = find_resnet50_weights(weights)
            state = extract_state_dict(read_checkpoint(path), str(path))  # restricted reader: no pickled code runs
            net.load_state_dict(state, strict=True)
            log.info("ResNet-50 ImageNet weights from %s", path)
        self.body = nn.Sequential(
            net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
        )
        if variant in ("linear", "frozen"):
            self.body.requires_grad_(False)
        self.level_channels = [256, 512, 1024, 2048]
        self.level_strides = [4, 8, 16, 32]
        self.pre_neck_channels = 2048
        self.neck_channels = 2048

    def channels(self, pool: str) -> int:
        from ultrasam_training.downstream.encoders import pooled_width

        return pooled_width(self, pool)

    def train(self, mode: bool = True) -> "ResNet50Features":
        super().train(mode)
        for module in self.modules():  # small CPU batches: keep ImageNet BatchNorm statistics
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def forward(self, x: Tensor, with_levels: bool = True, with_neck: bool = True) -> EncoderOutput:
        levels = []
        for i, layer in enumerate(self.body):
            x = layer(x)
            if with_levels and i >= 4:
                levels.append(x)
        return EncoderOutput(levels, x, x if with_neck else None)
