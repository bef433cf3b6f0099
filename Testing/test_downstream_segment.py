"""Mask2Former on an encoder's features: query post-processing geometry, and the smoke run end to end.

The smoke run trains a small Hugging Face Mask2Former on LiteMedSAM's frozen encoder (2 real BUSI
images at 128 px) for a few iterations on one fixed batch (the loss must fall), then scores COCO mask
AP (per class and class-agnostic) with pycocotools.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mmengine")
pytest.importorskip("transformers")

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_queries_become_instances_at_the_original_resolution():
    from ultrasam_training.downstream.segmentation import instances_from_queries

    # 3 queries, 2 classes (+ no-object). Query 1 is confident "malignant" with a mask on the
    # input-frame rectangle rows 8-15, cols 16-31 of a 32x32 mask grid for a 64-px input whose
    # image covers the top half (valid rows 0.5): original image 100 x 400 (h x w).
    class_logits = torch.tensor([[0.0, 0.0, 5.0], [0.0, 6.0, 0.0], [3.0, 0.0, 0.0]])
    mask_logits = torch.full((3, 32, 32), -10.0)
    mask_logits[1, 8:16, 16:32] = 10.0
    mask_logits[2, 0:4, 0:4] = 10.0
    instances = instances_from_queries(class_logits, mask_logits, (0.5, 1.0), 64, (100, 400), top_k=6)
    best = instances[0]
    assert (best["query"], best["label"]) == (1, 1)
    assert best["mask"].shape == (100, 400)
    rows, cols = np.nonzero(best["mask"])
    # input rows 16-31 of the 32 valid rows -> original rows 50-99; input cols 32-63 -> original cols 200-399
    assert abs(rows.min() - 50) <= 2 and rows.max() == 99 and abs(cols.min() - 200) <= 4 and cols.max() == 399
    assert best["score"] > 0.9 and all(a["score"] >= b["score"] for a, b in zip(instances, instances[1:]))
    assert not instances[-1]["mask"].any() or instances[-1]["score"] < 0.1


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_dir, litemedsam_checkpoint):
    from ultrasam_training.downstream.run import run_downstream

    sets = ["train_dataloader.dataset", "val_dataloader.dataset", "evaluation.sets.val", "evaluation.sets.test"]
    options = {
        f"{prefix}.{key}": value
        for prefix in sets
        for key, value in dict(data_root=str(data_dir), splits_root=str(REPO_ROOT / "work_dirs/data")).items()
    }
    options["model.encoder"] = str(litemedsam_checkpoint)
    work_dir = tmp_path_factory.mktemp("segment") / "run"
    return run_downstream("segment", "downstream_segment_smoke", work_dir=work_dir, cfg_options=options)


def test_mask2former_smoke_lowers_the_loss_and_scores_coco_ap(smoke_run):
    losses = {}
    for scalars in smoke_run.glob("*/vis_data/scalars.json"):
        for line in scalars.read_text().splitlines():
            record = json.loads(line)
            if "loss" in record:
                losses[int(record["iter"])] = float(record["loss"])
    assert sorted(losses) == [1, 2, 3, 4] and losses[4] < losses[1], losses
    summary = json.loads((smoke_run / "results" / "summary.json").read_text())
    test = summary["sets"]["test"]
    assert {"mAP", "AP_benign", "AP_malignant", "agnostic_AP", "agnostic_AP50"} <= set(test)
    for name in ("mAP", "agnostic_AP", "agnostic_AP50"):
        assert 0.0 <= test[name]["value"] <= 1.0 and test[name]["n"] == 2
    assert test["lesions"] >= 2
    with open(smoke_run / "results" / "predictions" / "test.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == test["lesions"] and all(0.0 <= float(r["lesion_iou"]) <= 1.0 for r in rows)
    assert summary["cost"]["trainable_parameters"] < summary["cost"]["total_parameters"]  # frozen encoder
    assert (smoke_run / "results" / "summary.md").read_text().count("|") > 20


def test_the_runner_keeps_the_pretrained_encoder(smoke_run, litemedsam_checkpoint):
    """The Runner calls ``init_weights``; HF's re-initialises every module it did not build itself,
    which once turned the frozen pretrained encoder into random weights. After the smoke run the
    checkpoint's frozen encoder must be LiteMedSAM's, tensor for tensor (BN statistics included)."""
    from ultrasam.checkpoints import extract_state_dict, read_checkpoint
    from ultrasam.models import open_model

    reference = open_model(str(litemedsam_checkpoint), family="litemedsam").sam.image_encoder.state_dict()
    saved = extract_state_dict(read_checkpoint(smoke_run / "iter_4.pth"), "iter_4.pth")
    prefix = "net.model.pixel_level_module.encoder.encoder."
    encoder = {k[len(prefix) :]: v for k, v in saved.items() if k.startswith(prefix)}
    assert set(encoder) == set(reference)
    differing = [k for k, v in reference.items() if not torch.equal(encoder[k], v)]
    assert differing == [], differing[:5]


def test_init_weights_leaves_the_constructed_model_alone(litemedsam_checkpoint):
    from ultrasam_training.downstream.segmentation import Mask2FormerSegmenter

    small = dict(num_queries=4, encoder_layers=1, decoder_layers=2, encoder_feedforward_dim=64, dim_feedforward=64)
    model = Mask2FormerSegmenter(num_classes=2, encoder=str(litemedsam_checkpoint), family="litemedsam", mask2former=small)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.init_weights()
    assert [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])] == []
