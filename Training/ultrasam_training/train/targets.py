"""Ground-truth masks in the model frame and at the decoder's low resolution (protocol §3, §1.6).

The original resized instance masks with nearest neighbour to the resized image frame, padded
them bottom/right to the square input, then downsampled them bilinearly to 256² and rounded:
those 0/1 maps are the targets of every loss and of the true IoU that selects masks.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

#: Side of the decoder's mask logits (4 × the 64² embedding grid) for every family here.
LOW_RES = 256


def masks_to_frame(masks: np.ndarray, resized_hw: tuple[int, int]) -> np.ndarray:
    """``(N, H, W)`` bool masks → ``(N, h, w)`` bool in the resized frame, nearest neighbour (cv2, as mmcv)."""
    new_h, new_w = resized_hw
    out = np.zeros((len(masks), new_h, new_w), bool)
    for i, mask in enumerate(masks):
        out[i] = cv2.resize(mask.astype(np.uint8), (new_w, new_h), interpolation=cv2.INTER_NEAREST) > 0
    return out


def low_res_targets(frame_masks: np.ndarray, input_size: int, size: int = LOW_RES) -> torch.Tensor:
    """Frame masks padded to ``input_size``² then bilinearly resized to ``size``² and rounded: ``(N, size, size)`` float 0/1."""
    count, height, width = frame_masks.shape
    padded = torch.zeros((count, 1, input_size, input_size), dtype=torch.float32)
    padded[:, 0, :height, :width] = torch.from_numpy(frame_masks.astype(np.float32))
    if input_size != size:
        padded = F.interpolate(padded, (size, size), mode="bilinear", align_corners=False)
    return padded[:, 0].round()
