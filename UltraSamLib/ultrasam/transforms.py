"""Image → model input, and model output → original pixels, per family (see ``ModelSpec``).

Every model in the family was trained on 8-bit images, so every input is first brought to 8-bit
RGB by one documented rule (:func:`to_rgb_uint8`). The resize, normalisation and padding then
follow the family's original code exactly: UltraSam truncates (``int(side * s)``) and resizes
with OpenCV bilinear, SAM rounds and resizes with PIL, LiteMedSAM uses OpenCV area resampling
and per-image min-max scaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ultrasam.errors import ImageError
from ultrasam.models.spec import ModelSpec

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
DEFAULT_PERCENTILES = (0.5, 99.5)
_CV2_INTERPOLATION = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC}


def to_rgb_uint8(image: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """Any 2D image → ``H×W×3`` uint8 RGB.

    * gray (H×W or H×W×1) is replicated to three channels; RGBA drops its alpha channel;
    * uint8 passes unchanged;
    * anything else (uint16, int, float) is windowed linearly to 0–255: ``window=(lo, hi)`` when
      given, otherwise the robust 0.5th–99.5th percentiles of the image (so a few bright
      calipers or text pixels do not darken the tissue); values outside are clipped;
    * NaN or infinite pixels are rejected: they have no meaningful grey level.
    """
    array = np.asarray(image)
    if array.size == 0:
        raise ImageError(f"image is empty (shape {array.shape})")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] in (3, 4):
        array = array[..., :3]
    else:
        raise ImageError(f"expected a 2D gray, RGB or RGBA image (H×W, H×W×3, H×W×4); got shape {array.shape}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if not np.issubdtype(array.dtype, np.number):
        raise ImageError(f"unsupported pixel type {array.dtype}")
    values = array.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        bad = int((~finite).any(axis=2).sum())
        raise ImageError(f"image contains NaN or infinite values in {bad} pixels; clean or mask them first")
    lo, hi = window if window is not None else np.percentile(values, DEFAULT_PERCENTILES)
    if not hi > lo:
        if window is not None:
            raise ImageError(f"intensity window must have low < high, got {window}")
        return np.zeros(array.shape, np.uint8)  # a constant image carries no contrast
    scaled = (values - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def resized_shape(height: int, width: int, spec: ModelSpec) -> tuple[int, int]:
    """``(new_h, new_w)`` of the resized image before padding."""
    size = spec.image_size
    if spec.resize == "squash":
        return size, size
    if spec.resize == "truncate":  # mmcv rescale_size as the original ran it: no +0.5
        scale = min(size / max(height, width), size / min(height, width))
        return int(height * scale), int(width * scale)
    scale = size * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


@dataclass(frozen=True)
class InputGeometry:
    """Where the original image sits inside the padded model input."""

    original_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    input_size: int

    @property
    def scale_xy(self) -> np.ndarray:
        """Per-axis factors original → model pixels, ``(new_w / w, new_h / h)``."""
        (h, w), (nh, nw) = self.original_hw, self.resized_hw
        return np.array([nw / w, nh / h], dtype=np.float64)

    def points_to_model(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, np.float64) * self.scale_xy

    def boxes_to_model(self, boxes: np.ndarray) -> np.ndarray:
        return np.asarray(boxes, np.float64) * np.tile(self.scale_xy, 2)


def resize_image(rgb: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Resize an ``H×W×3`` uint8 image as the family's original code does."""
    new_h, new_w = resized_shape(rgb.shape[0], rgb.shape[1], spec)
    if spec.resize == "round" and spec.interpolation == "linear":
        from segment_anything.utils.transforms import ResizeLongestSide

        return ResizeLongestSide(spec.image_size).apply_image(rgb)
    return cv2.resize(rgb, (new_w, new_h), interpolation=_CV2_INTERPOLATION[spec.interpolation])


def prepare_input(
    rgb: np.ndarray, spec: ModelSpec, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, InputGeometry]:
    """8-bit RGB → normalised, padded ``[1, 3, S, S]`` float tensor and its geometry."""
    resized = resize_image(rgb, spec)
    tensor = torch.from_numpy(np.ascontiguousarray(resized)).to(device).permute(2, 0, 1).float()
    if spec.normalize == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN, device=tensor.device).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=tensor.device).view(3, 1, 1)
        tensor = (tensor - mean) / std
    else:
        low, high = tensor.min(), tensor.max()
        tensor = (tensor - low) / torch.clamp(high - low, min=1e-8)
    size = spec.image_size
    new_h, new_w = resized.shape[:2]
    tensor = F.pad(tensor, (0, size - new_w, 0, size - new_h))
    geometry = InputGeometry((rgb.shape[0], rgb.shape[1]), (new_h, new_w), size)
    return tensor.unsqueeze(0), geometry


def masks_to_original(low_res_logits: torch.Tensor, geometry: InputGeometry, spec: ModelSpec) -> torch.Tensor:
    """``[B, K, h, w]`` low-res logits → boolean masks at the original resolution.

    ``binary`` (UltraSam, D4): threshold at 256², upsample the binary mask to the padded input,
    crop, upsample to the original size, keep anything non-zero — a systematic ~1 low-res pixel
    dilation that the original's metrics include. ``logits`` (SAM): upsample, crop, upsample,
    threshold at 0.
    """
    size = geometry.input_size
    new_h, new_w = geometry.resized_hw
    source = (low_res_logits > 0).float() if spec.postprocess == "binary" else low_res_logits.float()
    if source.shape[-1] != size or source.shape[-2] != size:
        source = F.interpolate(source, (size, size), mode="bilinear", align_corners=False)
    source = source[..., :new_h, :new_w]
    upsampled = F.interpolate(source, geometry.original_hw, mode="bilinear", align_corners=False)
    return upsampled != 0 if spec.postprocess == "binary" else upsampled > 0


def mask_to_box(mask: np.ndarray) -> np.ndarray | None:
    """``[x_min, y_min, x_max + 1, y_max + 1]`` of a boolean mask (exclusive max corner), or None."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)
