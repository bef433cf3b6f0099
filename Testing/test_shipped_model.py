"""The shipped default model, UltraSam-Lite v2: the packaged delta, composed with LiteMedSAM from
PyPI, opened through the public API, segments the fixed BUSI and HC18 test subsets from a click and
from a box with the Dice the README reports (within 0.01)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from ultrasam import weights
from ultrasam.checkpoints import read_checkpoint, write_safetensors
from ultrasam.delta import compose
from ultrasam.errors import CheckpointError
from ultrasam.models import DEFAULT_WEIGHTS, open_model

#: Mean Dice of the shipped model on the first SUBSET images of each test split, GT centroid point
#: and exact GT box, measured by the README's command:
#:   ultrasam evaluate --model ultrasam_lite --shared-data ../shared/data --limit 12 --prompt point box
SUBSET = 12
REPORTED = {
    ("test_busi", "point"): 0.898,  # 14 lesions
    ("test_busi", "box"): 0.937,
    ("test_hc18", "point"): 0.873,  # 12 heads
    ("test_hc18", "box"): 0.948,
}


@pytest.fixture(scope="module")
def shipped(litemedsam_checkpoint):
    return weights.get_entry("ultrasam_lite")


def test_the_default_everywhere_is_the_shipped_click_ready_model(shipped, litemedsam_checkpoint):
    assert DEFAULT_WEIGHTS == "ultrasam_lite"
    model = open_model(device="cpu")
    assert model.spec.family == "ultrasam_lite"
    assert model.spec.supports("point") and model.spec.supports("box")
    assert not open_model("litemedsam", device="cpu").spec.supports("point")


def test_the_packaged_file_is_small_pinned_and_pickle_free(shipped):
    path = weights.fetch("ultrasam_lite")
    assert path == shipped.package_path and path.is_file()
    data = path.read_bytes()
    assert len(data) <= 20_000_000 and len(data) == shipped.size
    assert hashlib.sha256(data).hexdigest() == shipped.sha256
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])  # safetensors: JSON header, tensors
    meta = json.loads(header["__metadata__"]["ultrasam"])
    base = weights.get_entry("litemedsam")
    assert meta["base"] == {"name": "litemedsam", "sha256": base.sha256}
    assert meta["ultrasam_family"] == "ultrasam_lite" and meta["config_sha256"] and meta["metrics"]


def test_only_the_trained_parts_differ_from_the_base(shipped, litemedsam_checkpoint):
    delta = read_checkpoint(weights.fetch("ultrasam_lite"))["state_dict"]
    parts = {key.split(".")[0] + ("." + key.split(".")[1] if key.startswith("image_encoder.") else "") for key in delta}
    assert parts == {"image_encoder.neck", "prompt_encoder", "mask_decoder"}
    base = open_model("litemedsam", device="cpu").sam.state_dict()
    composed = open_model(device="cpu").sam.state_dict()
    for key, value in composed.items():
        if key in delta:
            assert torch.equal(value, delta[key])
        else:
            assert torch.equal(value, base[key]), key


def test_a_delta_never_composes_with_other_weights_or_opens_alone(shipped, tmp_path, litemedsam_checkpoint):
    container = read_checkpoint(weights.fetch("ultrasam_lite"))
    base = open_model("litemedsam", device="cpu").sam.state_dict()
    with pytest.raises(CheckpointError, match="base weights with sha256"):
        compose(base, container, "0" * 64)
    foreign = {"state_dict": {"mask_decoder.unknown": torch.zeros(1)}, "meta": container["meta"]}
    with pytest.raises(CheckpointError, match="does not have"):
        compose(base, foreign, weights.get_entry("litemedsam").sha256)
    copy = tmp_path / "delta.safetensors"
    write_safetensors(container["state_dict"], copy, container["meta"])
    with pytest.raises(CheckpointError, match="registered name"):
        open_model(copy, device="cpu")


@pytest.fixture(scope="module")
def test_splits(data_dir, tmp_path_factory):
    from ultrasam_training.data.build import build_shared_splits

    return build_shared_splits(data_dir, tmp_path_factory.mktemp("splits"), if_exists="reuse", progress=False)


@pytest.mark.parametrize("dataset", ["test_busi", "test_hc18"])
def test_the_shipped_model_reproduces_its_reported_dice(dataset, test_splits, litemedsam_checkpoint):
    from ultrasam_training.evaluation import evaluate_dataset
    from ultrasam_training.evaluation.dataset import EvalDataset
    from ultrasam_training.evaluation.segmenters import load_segmenter

    subset = EvalDataset.load(test_splits[dataset], name=dataset, limit=SUBSET)
    point, box = evaluate_dataset(load_segmenter("ultrasam_lite", device="cpu"), subset, ["point", "box"], progress=False)
    for prompt, result in (("point", point), ("box", box)):
        assert result.summary["mean Dice"] == pytest.approx(REPORTED[(dataset, prompt)], abs=0.01), prompt
    assert np.isfinite(point.summary["mAP"])
