"""The UltraSam objective of one decoder pass (protocol §1.6, §5).

For each instance the candidate mask with the highest *true* IoU against the 256² target
(sigmoid > 0.5) is selected; focal and dice losses use that mask, and the IoU head is regressed
(MSE) to that true IoU at that index only. All maths in fp32, whatever the autocast dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class LossWeights:
    focal: float = 20.0
    dice: float = 1.0
    iou: float = 1.0


def true_iou(logits: Tensor, targets: Tensor) -> Tensor:
    """IoU of ``sigmoid(logits) > 0.5`` with 0/1 ``targets``: ``(N, K, H, W)``, ``(N, H, W)`` → ``(N, K)``.

    The union is clamped at 1e-6 as in the original, so an empty prediction of an empty target scores 0.
    """
    with torch.no_grad():
        predicted = torch.sigmoid(logits.float()) > 0.5
        target = targets[:, None].bool()
        intersection = (predicted & target).flatten(2).sum(-1).float()
        union = (predicted | target).flatten(2).sum(-1).float()
        return intersection / union.clamp(min=1e-6)


@dataclass
class Selection:
    """The mask chosen per instance and what the losses need of it."""

    index: Tensor  # (N,) chosen candidate
    logits: Tensor  # (N, H, W)
    predicted_iou: Tensor  # (N,) IoU-head output at the chosen index
    true_iou: Tensor  # (N,) its true IoU (no gradient)


def select_by_true_iou(logits: Tensor, predicted_iou: Tensor, targets: Tensor) -> Selection:
    """Per instance, the candidate of maximal true IoU (the first on ties, as ``argmax``)."""
    ious = true_iou(logits, targets)
    index = ious.argmax(dim=1)
    rows = torch.arange(logits.shape[0], device=logits.device)
    return Selection(index, logits[rows, index], predicted_iou[rows, index], ious[rows, index])


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, gamma: float = 2.0, alpha: float = 0.25) -> Tensor:
    """Focal loss on logits, mean over every pixel of every instance (mmdet's sigmoid form)."""
    logits, targets = logits.float(), targets.float()
    prob = torch.sigmoid(logits)
    p_wrong = (1 - prob) * targets + prob * (1 - targets)
    weight = (alpha * targets + (1 - alpha) * (1 - targets)) * p_wrong.pow(gamma)
    return (F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * weight).mean()


def dice_loss(logits: Tensor, targets: Tensor, eps: float = 1.0) -> Tensor:
    """``1 − 2Σpt / (Σp² + eps + Σt² + eps)`` per instance on sigmoid probabilities, mean over instances."""
    prob = torch.sigmoid(logits.float()).flatten(1)
    target = targets.float().flatten(1)
    numerator = 2 * (prob * target).sum(1)
    denominator = (prob * prob).sum(1) + eps + (target * target).sum(1) + eps
    return (1 - numerator / denominator).mean()


def iou_mse(predicted_iou: Tensor, true: Tensor) -> Tensor:
    """Mean squared error of the raw IoU-head output against the true IoU."""
    return F.mse_loss(predicted_iou.float(), true.float())


def pass_losses(
    logits: Tensor, predicted_iou: Tensor, targets: Tensor, weights: LossWeights = LossWeights(), suffix: str = ""
) -> tuple[dict[str, Tensor], Selection]:
    """Weighted focal, dice and IoU-MSE terms of one pass (keys ``loss_focal{suffix}`` …) and the selection.

    ``logits`` ``(N, K, H, W)`` candidates, ``predicted_iou`` ``(N, K)``, ``targets`` ``(N, H, W)`` 0/1.
    Also returns ``iou{suffix}``, the mean true IoU of the selected masks (logged, not optimised).
    """
    chosen = select_by_true_iou(logits, predicted_iou, targets)
    losses = {
        f"loss_focal{suffix}": weights.focal * sigmoid_focal_loss(chosen.logits, targets),
        f"loss_dice{suffix}": weights.dice * dice_loss(chosen.logits, targets),
        f"loss_iou{suffix}": weights.iou * iou_mse(chosen.predicted_iou, chosen.true_iou),
        f"iou{suffix}": chosen.true_iou.mean().detach(),
    }
    return losses, chosen
