"""A faster drop-in for the attention (and block) of ``segment_anything``'s ViT image encoder.

Why the reference is slow on a CPU: each global-attention block materialises a
``[heads, 4096, 4096]`` score matrix, a second one for the relative-position bias (a 5-D
broadcast add) and a third for the softmax, ~2.4 GB of memory traffic that never stays in
cache; and its ``nn.Linear`` layers go through MKL, which on the AMD machines we run on
reaches only about half of what oneDNN's sgemm does.

What this module does instead, only for fp32 CPU inference (no autograd, no autocast):

* attention runs in query chunks of a few MiB per head, so scores, bias and softmax stay in
  cache; the bias is built per chunk from the small ``rel_h``/``rel_w`` tensors;
* matrix products (qkv, proj, MLP, and q·kᵀ / p·v of global attention) use oneDNN
  (``torch.ops.mkldnn._linear_pointwise``), with GELU fused into the first MLP layer;
* windowed blocks project qkv only for real tokens and pad with the qkv bias (exactly what
  a zero padding token projects to), and ``proj`` runs after cropping the padding off.

Everywhere else (autograd, CUDA, bf16 autocast, other dtypes) it computes the same maths with
``scaled_dot_product_attention`` and the rel-pos bias as a float ``attn_mask``, which supports
backward and uses fused kernels on CUDA.

Parameters and state-dict keys are those of ``segment_anything``: ``qkv``, ``proj``,
``rel_pos_h``, ``rel_pos_w``; :func:`accelerate_image_encoder` swaps modules in place and
reuses the very same ``Parameter`` objects.
"""

from __future__ import annotations

import platform
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, Block, ImageEncoderViT, get_rel_pos
from torch import nn

#: Bytes of attention scores computed at once on the CPU path (several MiB keeps them in cache).
CHUNK_BYTES = 8 << 20


def _has_onednn_linear() -> bool:
    """oneDNN's fused linear op, used on x86-64 only (elsewhere the platform BLAS behind F.linear is the better bet)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


_ONEDNN_LINEAR = _has_onednn_linear()


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no argument and reports CUDA only
        return device_type == "cuda" and torch.is_autocast_enabled()


def use_cpu_fast_path(x: torch.Tensor, module: nn.Module) -> bool:
    """True when the chunked, oneDNN CPU path applies: fp32 CPU inference with nothing to differentiate."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or _autocast_on("cpu"):
        return False
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in module.parameters())):
        return False
    return True


def _linear(x: torch.Tensor, layer: nn.Linear, gelu: bool = False) -> torch.Tensor:
    """``layer(x)`` (then exact GELU if asked) through oneDNN, which is ~2x MKL here; fp32 CPU inference only."""
    if _ONEDNN_LINEAR:
        if gelu:
            return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "gelu", [], "none")
        return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "none", [], "")
    y = F.linear(x, layer.weight, layer.bias)
    return F.gelu(y) if gelu else y


def _rel_pos_terms(
    q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, hw: Tuple[int, int]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The decomposed rel-pos terms ``rel_h [G,h,w,h]`` and ``rel_w [G,h,w,w]`` for unscaled ``q [G,h*w,c]``.

    Same operations as ``segment_anything``'s ``add_decomposed_rel_pos``, without the
    broadcast into the full ``[G, N, N]`` map.
    """
    h, w = hw
    r_q = q.reshape(q.shape[0], h, w, q.shape[-1])
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, get_rel_pos(h, h, rel_pos_h))
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, get_rel_pos(w, w, rel_pos_w))
    return rel_h, rel_w


def _chunked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_h: Optional[torch.Tensor],
    rel_w: Optional[torch.Tensor],
    hw: Tuple[int, int],
) -> torch.Tensor:
    """softmax(q kᵀ + bias) v for ``q, k, v [G, N, c]`` (q already scaled), a few MiB of scores at a time.

    Large problems (global attention) go one head at a time in runs of whole query rows, with
    oneDNN products and the two rel-pos terms broadcast-added in place; small ones (windows)
    are batched over windows × heads with ``baddbmm`` into one reused score buffer. The
    softmax runs in place (it reads each element before writing it).
    """
    groups, n, _ = q.shape
    h, w = hw
    out = torch.empty_like(q)
    per_group = n * n * q.element_size()
    if per_group > CHUNK_BYTES:
        rows = max(1, min(h, CHUNK_BYTES // (w * n * q.element_size())))
        for g in range(groups):
            key = k[g].contiguous()
            value_t = v[g].t().contiguous()
            for r0 in range(0, h, rows):
                r1 = min(h, r0 + rows)
                s = _scores(q[g, r0 * w : r1 * w], key)
                if rel_h is not None:
                    grid = s.view(r1 - r0, w, h, w)
                    grid.add_(rel_h[g, r0:r1, :, :, None]).add_(rel_w[g, r0:r1, :, None, :])
                torch.ops.aten._softmax.out(s, -1, False, out=s)
                out[g, r0 * w : r1 * w] = _probs_times_values(s, value_t, v[g])
        return out
    batch = max(1, min(groups, CHUNK_BYTES // per_group))
    scores = torch.empty(batch, n, n, dtype=q.dtype)
    for g0 in range(0, groups, batch):
        g1 = min(groups, g0 + batch)
        s = scores[: g1 - g0]
        if rel_h is not None:
            torch.add(rel_h[g0:g1, :, :, :, None], rel_w[g0:g1, :, :, None, :], out=s.view(g1 - g0, h, w, h, w))
            s.baddbmm_(q[g0:g1], k[g0:g1].transpose(1, 2))
        else:
            torch.bmm(q[g0:g1], k[g0:g1].transpose(1, 2), out=s)
        torch.ops.aten._softmax.out(s, -1, False, out=s)
        torch.bmm(s, v[g0:g1], out=out[g0:g1])
    return out


def _scores(q_rows: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    if _ONEDNN_LINEAR:
        return torch.ops.mkldnn._linear_pointwise(q_rows, key, None, "none", [], "")
    return q_rows @ key.t()


def _probs_times_values(probs: torch.Tensor, value_t: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    if _ONEDNN_LINEAR:
        return torch.ops.mkldnn._linear_pointwise(probs, value_t, None, "none", [], "")
    return probs @ value


class FastAttention(nn.Module):
    """Multi-head attention with decomposed relative positions; same constructor, parameters
    and results as ``segment_anything.modeling.image_encoder.Attention``."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        input_size: Optional[Tuple[int, int]] = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError("input_size is required when use_rel_pos is True")
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    @classmethod
    def from_attention(cls, attn: Attention) -> "FastAttention":
        """A FastAttention sharing ``attn``'s parameter objects (built on the meta device: no copy, no init)."""
        dim = attn.qkv.in_features
        with torch.device("meta"):
            fast = cls(dim, attn.num_heads, attn.qkv.bias is not None, attn.use_rel_pos, True, (1, 1))
        fast.scale = attn.scale
        fast.qkv = attn.qkv
        fast.proj = attn.proj
        if attn.use_rel_pos:
            fast.rel_pos_h = attn.rel_pos_h
            fast.rel_pos_w = attn.rel_pos_w
        return fast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, h, w, _ = x.shape
        fast = use_cpu_fast_path(x, self)
        qkv = _linear(x, self.qkv) if fast else self.qkv(x)
        q, k, v = split_heads(qkv, self.num_heads)
        out = self.attend(q, k, v, (h, w), fast)
        out = merge_heads(out, batch, h, w)
        return _linear(out, self.proj) if fast else self.proj(out)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hw: Tuple[int, int], fast: bool
    ) -> torch.Tensor:
        """Attention of ``q, k, v [B*heads, h*w, c]`` (unscaled q) over one ``h x w`` grid, heads kept apart."""
        rel_h = rel_w = None
        if self.use_rel_pos:
            rel_h, rel_w = _rel_pos_terms(q, self.rel_pos_h, self.rel_pos_w, hw)
        if fast:
            return _chunked_attention(q.mul_(self.scale), k, v, rel_h, rel_w, hw)
        mask = None
        if rel_h is not None:
            n = hw[0] * hw[1]
            mask = (rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]).reshape(q.shape[0], 1, n, n)
            mask = mask.to(q.dtype)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], attn_mask=mask, scale=self.scale)
        return out[:, 0]


def split_heads(qkv: torch.Tensor, num_heads: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[B, h, w, 3*dim]`` → q, k, v each ``[B*heads, h*w, head_dim]``, contiguous.

    Contiguous matters: oneDNN's fast kernels need dense operands (a strided key runs ~100x slower).
    """
    batch, h, w, three_dim = qkv.shape
    head_dim = three_dim // (3 * num_heads)
    qkv = qkv.reshape(batch, h * w, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4).contiguous()
    return qkv.view(3, batch * num_heads, h * w, head_dim).unbind(0)


def merge_heads(out: torch.Tensor, batch: int, h: int, w: int) -> torch.Tensor:
    """``[B*heads, h*w, c]`` → ``[B, h, w, heads*c]``."""
    heads = out.shape[0] // batch
    return out.view(batch, heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(batch, h, w, -1)


def _axis_parts(size: int, window: int) -> list[tuple[object, slice, slice, tuple[int, ...]]]:
    """How one token axis of length ``size`` maps onto ``window``-sized blocks.

    Each part is (block index, slice within the block, slice of token positions, shape of those
    tokens split as blocks × within-block): the complete blocks, then the partial last one.
    """
    full, rest = divmod(size, window)
    parts: list[tuple[object, slice, slice, tuple[int, ...]]] = []
    if full:
        parts.append((slice(0, full), slice(None), slice(0, full * window), (full, window)))
    if rest:
        parts.append((full, slice(0, rest), slice(full * window, size), (rest,)))
    return parts


def _window_qkv(qkv: torch.Tensor, bias: Optional[torch.Tensor], window: int, num_heads: int):
    """Window-partition projected tokens straight into q, k, v ``[B*windows*heads, window², head_dim]``.

    The reference pads the normalised tokens with zeros *before* ``qkv``; padding after it with
    what a zero token projects to (the qkv bias) is exactly equivalent, skips projecting the
    padding, and lets padding, window partition and head split happen in one copy.
    Returns (q, k, v) and the padded size.
    """
    batch, h, w, three_dim = qkv.shape
    head_dim = three_dim // (3 * num_heads)
    nh, nw = -(-h // window), -(-w // window)
    dest = qkv.new_empty(3, batch, nh, nw, num_heads, window, window, head_dim)
    grid = dest.permute(1, 2, 5, 3, 6, 0, 4, 7)  # [B, nh, window, nw, window, 3, heads, head_dim]
    source = qkv.view(batch, h, w, 3, num_heads, head_dim)
    for row_block, row_in, rows, row_shape in _axis_parts(h, window):
        for col_block, col_in, cols, col_shape in _axis_parts(w, window):
            part = source[:, rows, cols].view(batch, *row_shape, *col_shape, 3, num_heads, head_dim)
            grid[:, row_block, row_in, col_block, col_in].copy_(part)
    fill = (bias if bias is not None else qkv.new_zeros(three_dim)).view(3, num_heads, head_dim)
    if h % window:
        grid[:, nh - 1, h % window :] = fill
    if w % window:
        grid[:, :, :, nw - 1, w % window :] = fill
    q, k, v = dest.view(3, batch * nh * nw * num_heads, window * window, head_dim).unbind(0)
    return (q, k, v), (nh * window, nw * window)


def _window_merge(out: torch.Tensor, batch: int, padded_hw: Tuple[int, int], hw: Tuple[int, int], window: int):
    """Inverse of :func:`_window_qkv` for the attention output: ``[B, h, w, dim]`` without the padding."""
    nh, nw = padded_hw[0] // window, padded_hw[1] // window
    heads, head_dim = out.shape[0] // (batch * nh * nw), out.shape[-1]
    grid = out.view(batch, nh, nw, heads, window, window, head_dim).permute(0, 1, 4, 2, 5, 3, 6)
    merged = out.new_empty(batch, hw[0], hw[1], heads * head_dim)
    target = merged.view(batch, hw[0], hw[1], heads, head_dim)
    for row_block, row_in, rows, row_shape in _axis_parts(hw[0], window):
        for col_block, col_in, cols, col_shape in _axis_parts(hw[1], window):
            part = target[:, rows, cols].view(batch, *row_shape, *col_shape, heads, head_dim)
            part.copy_(grid[:, row_block, row_in, col_block, col_in])
    return merged


class FastBlock(Block):
    """``segment_anything`` ``Block`` whose fp32 CPU inference forward avoids redundant passes.

    Only ``forward`` differs; instances are made by swapping ``__class__`` of an existing
    ``Block`` whose ``attn`` is a :class:`FastAttention`, so modules and weights stay put.
    """

    attn: FastAttention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not use_cpu_fast_path(x, self):
            return super().forward(x)
        attn = self.attn
        batch, h, w, _ = x.shape
        qkv = _linear(self.norm1(x), attn.qkv)
        if self.window_size > 0:
            (q, k, v), padded_hw = _window_qkv(qkv, attn.qkv.bias, self.window_size, attn.num_heads)
            del qkv
            out = attn.attend(q, k, v, (self.window_size, self.window_size), fast=True)
            out = _window_merge(out, batch, padded_hw, (h, w), self.window_size)
        else:
            q, k, v = split_heads(qkv, attn.num_heads)
            del qkv
            out = merge_heads(attn.attend(q, k, v, (h, w), fast=True), batch, h, w)
        del q, k, v
        x = _linear(out, attn.proj).add_(x)
        del out
        mlp = self.mlp
        if isinstance(mlp.act, nn.GELU) and mlp.act.approximate == "none":
            hidden = _linear(self.norm2(x), mlp.lin1, gelu=True)
        else:
            hidden = mlp.act(_linear(self.norm2(x), mlp.lin1))
        return _linear(hidden, mlp.lin2).add_(x)


def accelerate_image_encoder(encoder: ImageEncoderViT) -> ImageEncoderViT:
    """Swap every block of ``encoder`` to :class:`FastBlock` / :class:`FastAttention`, in place.

    Weights, parameter objects and state-dict keys are unchanged, so it may be called before
    or after loading a checkpoint, and calling it twice is harmless. Subclasses of ``Block`` or
    ``Attention`` (which may compute something else) are left alone.
    """
    for block in encoder.blocks:
        if not isinstance(block, Block):
            raise TypeError(f"expected segment_anything Blocks, got {type(block).__name__}")
        if type(block.attn) is Attention:
            block.attn = FastAttention.from_attention(block.attn)
        if type(block) is Block and isinstance(block.attn, FastAttention):
            block.__class__ = FastBlock
    return encoder
