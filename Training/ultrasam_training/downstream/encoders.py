"""A SAM-family image encoder as a feature extractor: feature levels, pre-neck map, neck, pooling.

Which map is "the last feature map" (protocol §8.1): the paper's classifier is mmpretrain's
``ViTSAM`` with ``out_channels=0``, i.e. the last ViT block's 768-d tokens **before** SAM's neck,
mean-pooled. Here the same rule holds for every encoder: ``pre_neck`` is the last stage's tokens
before the neck (ViT-b: 768-d at 64×64; LiteMedSAM's TinyViT: 320-d at 64×64). Why not the neck:
the neck (1×1 and 3×3 convs to 256-d, LayerNorms) was trained only to feed SAM's mask decoder; the
pre-neck tokens are what the backbone itself learnt, and they are the paper's choice, so the
encoders compare on the same footing. The neck output stays available (``pool="neck"``) and is
measured by the linear probe as well.

Feature levels for Mask2Former (§8.2): ViT-b gives the outputs of its four global-attention blocks
(2, 5, 8, 11), all 768-d at stride 16. TinyViT gives each stage's output before its patch merging
(64-d at stride 1, 128-d at 2, 160-d at 4, 320-d at 4 of the 256-px input): a natural pyramid.

Pooling averages only the tokens that cover the image, not the zero padding that makes the input
square (the paper averaged everything; with BUSI's 4:3 frames a quarter of the tokens would be
padding whose share changes with the aspect ratio).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ultrasam_training.train.errors import TrainingError

log = logging.getLogger(__name__)

POOLS = ("pre_neck", "neck", "levels")


@dataclass
class EncoderOutput:
    """Feature maps of one batch, all NCHW."""

    levels: list[Tensor]
    pre_neck: Tensor
    neck: Tensor | None = None


def encoder_kind(encoder: nn.Module) -> str:
    """``vit`` (segment_anything ``ImageEncoderViT``) or ``tinyvit`` (LiteMedSAM)."""
    from ultrasam.models.tiny_vit import TinyViT

    if isinstance(encoder, TinyViT):
        return "tinyvit"
    if hasattr(encoder, "blocks") and hasattr(encoder, "patch_embed") and hasattr(encoder, "neck"):
        return "vit"
    raise TrainingError(f"unsupported image encoder {type(encoder).__name__}: expected a SAM ViT or TinyViT")


class EncoderFeatures(nn.Module):
    """Runs a SAM-family image encoder and returns its feature levels, pre-neck map and neck output.

    The encoder's own modules are reused (so LoRA/adapters injected into them take part), only the
    order of calls is spelled out so the intermediate maps can be kept.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.kind = encoder_kind(encoder)
        if self.kind == "vit":
            self.level_indices = tuple(i for i, b in enumerate(encoder.blocks) if getattr(b, "window_size", 1) == 0)
            if len(self.level_indices) < 1:
                self.level_indices = (len(encoder.blocks) - 1,)
            width = encoder.patch_embed.proj.out_channels
            stride = encoder.patch_embed.proj.stride[0]
            self.level_channels = [width] * len(self.level_indices)
            self.level_strides = [stride] * len(self.level_indices)
            self.pre_neck_channels = width
            self.image_size = int(encoder.img_size)
        else:
            config = encoder.config
            self.level_indices = tuple(range(len(config.embed_dims)))
            self.level_channels = list(config.embed_dims)
            strides, stride = [], config.stem_stride**2
            for i in range(len(config.embed_dims)):
                strides.append(stride)
                if i < len(config.merge_strides):
                    stride *= config.merge_strides[i]
            self.level_strides = strides
            self.pre_neck_channels = config.embed_dims[-1]
            self.image_size = int(config.img_size)
        self.neck_channels = int(encoder.neck[0].out_channels)

    def channels(self, pool: str) -> int:
        """Width of the pooled descriptor ``pool`` gives."""
        return pooled_width(self, pool)

    def forward(self, x: Tensor, with_levels: bool = True, with_neck: bool = True) -> EncoderOutput:
        if self.kind == "vit":
            return self._vit(x, with_levels, with_neck)
        return self._tinyvit(x, with_levels, with_neck)

    def _vit(self, x: Tensor, with_levels: bool, with_neck: bool) -> EncoderOutput:
        encoder = self.encoder
        x = encoder.patch_embed(x)
        if encoder.pos_embed is not None:
            x = x + encoder.pos_embed
        levels = []
        for i, block in enumerate(encoder.blocks):
            x = block(x)
            if with_levels and i in self.level_indices:
                levels.append(x.permute(0, 3, 1, 2))
        pre_neck = x.permute(0, 3, 1, 2)
        return EncoderOutput(levels, pre_neck, encoder.neck(pre_neck) if with_neck else None)

    def _tinyvit(self, x: Tensor, with_levels: bool, with_neck: bool) -> EncoderOutput:
        from ultrasam.models.tiny_vit import AttentionStage

        encoder = self.encoder
        x = encoder.patch_embed(x)
        levels = []
        for stage in encoder.layers:
            if isinstance(stage, AttentionStage):
                x = x.permute(0, 2, 3, 1)
                for block in stage.blocks:
                    x = block(x)
                x = x.permute(0, 3, 1, 2)
            else:
                for block in stage.blocks:
                    x = block(x)
            if with_levels:
                levels.append(x)
            pre_neck = x
            if stage.downsample is not None:
                x = stage.downsample(x)
        return EncoderOutput(levels, pre_neck, encoder.neck(pre_neck) if with_neck else None)


def pyramid(features: "EncoderFeatures | nn.Module", out: EncoderOutput) -> tuple[list[Tensor], list[int]]:
    """Four maps (fine to coarse) and their strides for Mask2Former's pixel decoder.

    Hugging Face's pixel decoder sends the three coarsest maps through its deformable encoder and
    the finer ones through its FPN, and only a map *finer* than those three reaches the FPN. So the
    first map must be finer: ViT-b's four global-block outputs are all at stride 16, and the first
    (block 2) is upsampled ×2 (bilinear, no weights) to stride 8; TinyViT gives stage 1 (stride 2)
    then stage 2, stage 3 and the neck (stride 4); ResNet-50 its four stages. The mask features
    are then at the first map's stride, and all four levels are used, as the paper's four.
    """
    import torch.nn.functional as F

    kind = getattr(features, "kind", "resnet")
    if kind == "vit":
        first = F.interpolate(out.levels[0], scale_factor=2.0, mode="bilinear", align_corners=False)
        maps = [first, *out.levels[1:4]]
    elif kind == "tinyvit":
        if out.neck is None:
            raise TrainingError("the TinyViT pyramid needs the neck output")
        maps = [*out.levels[1:4], out.neck]
    else:
        maps = list(out.levels[:4])
    return maps, pyramid_strides(features)


def pyramid_channels(features) -> list[int]:
    """Channels of the maps :func:`pyramid` returns."""
    kind = getattr(features, "kind", "resnet")
    if kind == "vit":
        return list(features.level_channels[:4])
    if kind == "tinyvit":
        return [*features.level_channels[1:4], features.neck_channels]
    return list(features.level_channels[:4])


def pyramid_strides(features) -> list[int]:
    kind = getattr(features, "kind", "resnet")
    if kind == "vit":
        stride = features.level_strides[0]
        return [stride // 2, stride, stride, stride]
    if kind == "tinyvit":
        return [*features.level_strides[1:4], features.level_strides[-1]]
    return list(features.level_strides[:4])


def _check_pool(pool: str) -> None:
    if pool not in POOLS:
        raise TrainingError(f"pool must be one of {POOLS}, not {pool!r}")


def pooled_width(features, pool: str) -> int:
    """Width of the descriptor ``pool`` gives for ``features`` (an ``EncoderFeatures`` or ResNet-50)."""
    _check_pool(pool)
    if pool == "levels":
        return int(sum(features.level_channels))
    return int(features.pre_neck_channels if pool == "pre_neck" else features.neck_channels)


def pool_descriptor(out: EncoderOutput, pool: str, valid: Tensor | None) -> Tensor:
    """The pooled descriptor ``pool`` of one encoder output: ``pre_neck``, ``neck`` or ``levels``.

    ``levels`` concatenates the masked means of every feature level (TinyViT: its four stages,
    64+128+160+320 = 672-d; ViT-b: its four global blocks, 4×768; ResNet-50: its four stages), the
    multi-layer read-out of linear evaluations such as DINOv2's: earlier stages keep texture and
    edge statistics that the last stage has traded for what the mask decoder needs.
    """
    _check_pool(pool)
    if pool == "levels":
        if not out.levels:
            raise TrainingError("the levels descriptor needs the encoder run with its levels")
        return torch.cat([masked_mean(level, valid) for level in out.levels], dim=1)
    if pool == "neck":
        if out.neck is None:
            raise TrainingError("the neck descriptor needs the encoder run with its neck")
        return masked_mean(out.neck, valid)
    return masked_mean(out.pre_neck, valid)


def valid_fractions(resized_hw: tuple[int, int], image_size: int) -> tuple[float, float]:
    """Share of the padded square input's rows and columns that the resized image covers."""
    return resized_hw[0] / image_size, resized_hw[1] / image_size


def masked_mean(feature: Tensor, valid: Tensor | None) -> Tensor:
    """Mean of ``(B, C, h, w)`` over the tokens covering the image; ``valid`` is ``(B, 2)`` row/col fractions.

    A token counts when any part of it covers the image (ceil), so no image pixel is left out.
    """
    if valid is None:
        return feature.mean(dim=(2, 3))
    b, _, h, w = feature.shape
    rows = torch.arange(h, device=feature.device).view(1, h, 1)
    cols = torch.arange(w, device=feature.device).view(1, 1, w)
    valid = valid.to(feature.device, torch.float32)
    n_rows = torch.ceil(valid[:, 0] * h - 1e-6).clamp(1, h).view(b, 1, 1)
    n_cols = torch.ceil(valid[:, 1] * w - 1e-6).clamp(1, w).view(b, 1, 1)
    weight = ((rows < n_rows) & (cols < n_cols)).to(feature.dtype).unsqueeze(1)
    return (feature * weight).sum(dim=(2, 3)) / weight.sum(dim=(2, 3))


def reinitialise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random initialisation of the same architecture (the "from scratch" baseline).

    Every submodule with ``reset_parameters`` is reset (PyTorch's defaults); free parameters
    (positional embeddings, relative-position tables, attention biases) get N(0, 0.02).
    Seeded, so the baseline is reproducible.
    """
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        with torch.no_grad():
            for sub in module.modules():
                reset = getattr(sub, "reset_parameters", None)
                if callable(reset):
                    reset()
                    if isinstance(sub, nn.BatchNorm2d):
                        sub.reset_running_stats()
                    continue
                norm = "norm" in type(sub).__name__.lower()
                for name, parameter in sub.named_parameters(recurse=False):
                    if norm:
                        nn.init.ones_(parameter) if name == "weight" else nn.init.zeros_(parameter)
                    else:
                        nn.init.trunc_normal_(parameter, std=0.02)
    finally:
        torch.random.set_rng_state(generator_state)
    return module


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return trainable, total


def open_encoder(source: str, family: str | None = None, fast: bool = True):
    """The :class:`~ultrasam.models.SamModel` of ``source`` on the CPU (the runner moves it).

    ``fast=False`` keeps ``segment_anything``'s own attention modules in a ViT encoder: the
    accelerated inference path reads ``qkv.weight`` directly and would bypass LoRA or adapters.
    """
    from ultrasam.models import open_model

    return open_model(source, family=family, device="cpu", fast=fast)
