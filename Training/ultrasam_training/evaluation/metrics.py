"""Overlap metrics per instance and the paper's COCO segm mAP (pycocotools does the counting).

The paper (UltraSam, protocol §6) scores one prediction per ground-truth instance with
mmdet's ``CocoMetric``, i.e. pycocotools ``COCOeval(iouType="segm")``: the mask-IoU of each
prediction is thresholded at 0.50:0.05:0.95 and predictions are ranked across images by their
score (the predicted IoU). We run ``COCOeval`` with ``useCats=0`` so the figure is class-agnostic
whatever categories the file carries.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ultrasam_training.evaluation.errors import EvaluationError


def _check_pair(prediction: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    if prediction.shape != truth.shape:
        raise EvaluationError(f"prediction shape {prediction.shape} differs from ground truth {truth.shape}")
    return prediction, truth


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient 2|A∩B| / (|A| + |B|); two empty masks agree perfectly (1.0)."""
    prediction, truth = _check_pair(prediction, truth)
    total = int(prediction.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(prediction, truth).sum()) / total


def iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Jaccard index |A∩B| / |A∪B|; two empty masks agree perfectly (1.0)."""
    prediction, truth = _check_pair(prediction, truth)
    union = int(np.logical_or(prediction, truth).sum())
    return 1.0 if union == 0 else int(np.logical_and(prediction, truth).sum()) / union


def encode_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a 2-D mask with ``counts`` as ``str`` (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def coco_segm_map(ground_truth: Mapping[str, Any], detections: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Class-agnostic COCO segm ``mAP``, ``mAP@50`` and ``mAP@75`` of ``detections`` against a COCO dict.

    ``detections`` are COCO results (``image_id``, ``category_id``, ``segmentation`` RLE, ``score``).
    No detection at all scores 0 (pycocotools refuses an empty result list).
    """
    annotations = ground_truth.get("annotations") or []
    if not annotations:
        raise EvaluationError("the ground truth has no annotation to evaluate against")
    if not detections:
        return {"mAP": 0.0, "mAP@50": 0.0, "mAP@75": 0.0}
    per_image: dict[Any, int] = {}
    for detection in detections:
        per_image[detection["image_id"]] = per_image.get(detection["image_id"], 0) + 1
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress chatter
        truth = COCO()
        truth.dataset = {
            "images": list(ground_truth["images"]),
            "annotations": list(annotations),
            "categories": list(ground_truth.get("categories") or [{"id": 1, "name": "object"}]),
        }
        truth.createIndex()
        results = truth.loadRes([dict(d) for d in detections])
        evaluation = COCOeval(truth, results, iouType="segm")
        evaluation.params.useCats = 0
        evaluation.params.maxDets = [1, 10, max(100, max(per_image.values()))]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats
    return {"mAP": float(stats[0]), "mAP@50": float(stats[1]), "mAP@75": float(stats[2])}
