"""Prompted classification: the smoke run, the exported classifier's loading API, and train/deploy parity.

The smoke run caches the decoder descriptors of the lesions of 4 real BUSI images (box and click),
trains the head a few iterations on one fixed batch (the loss must fall) and exports
``prompt_classifier.safetensors``; loading it with only torch + safetensors must give back the run's own
probabilities, and classifying a live predictor result (hooks) must equal classifying the cached descriptor.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mmengine")

REPO_ROOT = Path(__file__).resolve().parents[1]
SETS = [
    "train_dataloader.dataset",
    "val_dataloader.dataset",
    "evaluation.sets.val",
    "evaluation.sets.test_box",
    "evaluation.sets.test_point",
]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_dir, litemedsam_checkpoint):
    from ultrasam_training.downstream.run import run_downstream

    options = {
        f"{prefix}.{key}": value
        for prefix in SETS
        for key, value in dict(
            data_root=str(data_dir),
            model=str(litemedsam_checkpoint),
            splits_root=str(REPO_ROOT / "work_dirs/data"),
            cache_dir=str(REPO_ROOT / "work_dirs/cache/prompted_smoke"),
        ).items()
    }
    options["model_source"] = str(litemedsam_checkpoint)
    work_dir = tmp_path_factory.mktemp("prompted") / "run"
    return run_downstream("prompted", "downstream_prompted_smoke", work_dir=work_dir, cfg_options=options)


def _losses(work_dir: Path) -> dict[int, float]:
    out = {}
    for scalars in work_dir.glob("*/vis_data/scalars.json"):
        for line in scalars.read_text().splitlines():
            record = json.loads(line)
            if "loss" in record:
                out[int(record["iter"])] = float(record["loss"])
    return out


def _rows(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_prompted_smoke_lowers_the_loss_and_reports_each_prompt(smoke_run):
    losses = _losses(smoke_run)
    assert sorted(losses) == list(range(1, 9)) and losses[8] < 0.8 * losses[1], losses
    summary = json.loads((smoke_run / "results" / "summary.json").read_text())
    assert set(summary["sets"]) == {"val", "test_box", "test_point"}
    box = _rows(smoke_run / "results/predictions/test_box.csv")
    point = _rows(smoke_run / "results/predictions/test_point.csv")
    assert len(box) == len(point) >= 4
    assert all(r["key"].endswith("|box") for r in box) and all(r["key"].endswith("|point") for r in point)
    assert len(_rows(smoke_run / "results/predictions/val.csv")) == 2 * len(box)
    assert summary["cost"]["empty_predicted_masks_train"] == len(point)  # LiteMedSAM: clicks give empty masks


def test_exported_classifier_round_trips_without_the_training_stack(smoke_run, data_dir, litemedsam_checkpoint):
    from ultrasam_training.downstream import busi
    from ultrasam_training.downstream.prompt_classifier import NOTICE, load_prompt_classifier
    from ultrasam_training.downstream.prompted_features import PROMPT_KINDS, lesion_descriptors

    classifier = load_prompt_classifier(smoke_run / "prompt_classifier.safetensors")
    assert classifier.classes == ["benign", "malignant"]
    assert classifier.layout == {"mask_token": 256, "conditioned": 256, "global": 320}
    assert classifier.notice == NOTICE and "not a diagnosis" in NOTICE.lower()
    images = busi.lesion_images(data_dir, "val", REPO_ROOT / "work_dirs/data", per_class=2)
    cached = lesion_descriptors(
        images, str(litemedsam_checkpoint), None, REPO_ROOT / "work_dirs/cache/prompted_smoke", progress=False
    )
    assert cached.computed == 0  # the smoke run's cache serves the same images
    for kind in PROMPT_KINDS:
        rows = {r["key"]: r for r in _rows(smoke_run / f"results/predictions/test_{kind}.csv")}
        assert len(rows) == len(cached.keys)
        for (image_key, annotation_id), descriptor in zip(cached.keys, cached.descriptors[:, PROMPT_KINDS.index(kind)]):
            row = rows[f"{image_key}|{annotation_id}|{kind}"]
            label, probabilities = classifier.classify_descriptor(torch.from_numpy(descriptor))
            assert label == row["predicted"]
            assert probabilities["malignant"] == pytest.approx(float(row["p_malignant"]), abs=1e-5)
            assert sum(probabilities.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="832"):
        classifier.classify_descriptor(torch.zeros(100))


def test_a_file_that_is_not_a_classifier_is_refused(tmp_path):
    from safetensors.torch import save_file

    from ultrasam_training.downstream.prompt_classifier import load_prompt_classifier

    path = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not an UltraSam prompt classifier"):
        load_prompt_classifier(path)


def test_a_live_image_classifies_like_its_cached_descriptor_and_decodes_like_the_predictor(
    smoke_run, data_dir, litemedsam_checkpoint
):
    from ultrasam.models import open_model
    from ultrasam.predictor import Predictor
    from ultrasam_training.downstream import busi
    from ultrasam_training.downstream.prompt_classifier import decode_prompt, encode_image, load_prompt_classifier
    from ultrasam_training.downstream.prompted_features import lesion_descriptors
    from ultrasam_training.evaluation.prompts import coco_box
    from ultrasam_training.train.dataset import read_rgb

    image = busi.lesion_images(data_dir, "val", REPO_ROOT / "work_dirs/data", per_class=1)[1]  # a malignant one
    cached = lesion_descriptors(
        [image], str(litemedsam_checkpoint), None, REPO_ROOT / "work_dirs/cache/prompted_smoke", progress=False
    )
    assert cached.reused == 1
    classifier = load_prompt_classifier(smoke_run / "prompt_classifier.safetensors")
    model = open_model(str(litemedsam_checkpoint), device="cpu")
    rgb, box = read_rgb(image.path), coco_box(image.lesions[0].annotation)
    live = classifier.classify_image(model, rgb, box=box)
    expected = classifier.classify_descriptor(torch.from_numpy(cached.descriptors[0, 0]))
    assert live[0] == expected[0]
    assert live[1] == pytest.approx(expected[1], abs=1e-5)
    # the descriptor's mask is the deployed predictor's mask for the same prompt
    predictor = Predictor(model)
    predictor.set_image(rgb)
    prediction = predictor.predict(box=box, refine=False)
    _, _, logits, iou = decode_prompt(model, encode_image(model, rgb), box=box)
    assert np.allclose(logits.numpy(), prediction.low_res_logits[0, 0], atol=1e-3)
    assert float(iou) == pytest.approx(prediction.score, abs=1e-4)


def test_the_trained_file_records_its_model_and_classifies_through_the_predictor(
    smoke_run, data_dir, litemedsam_checkpoint, tmp_path
):
    """The smoke run's export names LiteMedSAM by the digest its descriptor cache used; a predictor with
    it gives what ``classify_image`` gives; the same head on another model's weights is refused."""
    from ultrasam.classifier import ClassifierError, load_prompt_classifier, sam_digest, save_prompt_classifier
    from ultrasam.models import open_model
    from ultrasam.predictor import Predictor
    from ultrasam_training.downstream import busi
    from ultrasam_training.evaluation.prompts import coco_box
    from ultrasam_training.train.dataset import read_rgb
    from ultrasam_training.train.model import encoder_digest

    model = open_model(str(litemedsam_checkpoint), device="cpu")
    classifier = load_prompt_classifier(smoke_run / "prompt_classifier.safetensors")
    assert classifier.model["family"] == "litemedsam"
    assert classifier.model["digest"] == sam_digest(model.sam) == encoder_digest(model.sam)
    image = busi.lesion_images(data_dir, "val", REPO_ROOT / "work_dirs/data", per_class=1)[0]
    rgb, box = read_rgb(image.path), np.asarray(coco_box(image.lesions[0].annotation), float)
    predictor = Predictor(model, classifier=classifier)
    predictor.set_image(rgb)
    prediction = predictor.predict(box=box)
    label, probabilities = classifier.classify_image(model, rgb, box=box)
    assert prediction.label == label and prediction.probabilities == pytest.approx(probabilities, abs=1e-5)
    hidden = [layer.out_features for layer in classifier.head if isinstance(layer, torch.nn.Linear)][:-1]
    foreign = save_prompt_classifier(
        tmp_path / "foreign.safetensors", classifier.head, classifier.classes, classifier.layout, hidden,
        model={"family": "ultrasam_lite", "digest": classifier.model["digest"]},
    )
    with pytest.raises(ClassifierError, match="ultrasam_lite"):
        predictor.attach_classifier(foreign)
