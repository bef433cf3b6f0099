"""Downstream classification: the smoke config end to end, and the pooled-feature cache.

The smoke run trains the linear probe on cached LiteMedSAM features of 6 real BUSI images (val split)
for 8 iterations on one fixed batch, selects on val, evaluates and reports; the loss must fall.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mmengine")

REPO_ROOT = Path(__file__).resolve().parents[1]


def _losses(work_dir: Path) -> dict[int, float]:
    losses = {}
    for scalars in sorted(work_dir.glob("*/vis_data/scalars.json")):
        for line in scalars.read_text().splitlines():
            record = json.loads(line)
            if "loss" in record:
                losses[int(record["iter"])] = float(record["loss"])
    return losses


def _dataset_options(prefixes: list[str], **values) -> dict:
    return {f"{prefix}.{key}": value for prefix in prefixes for key, value in values.items()}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_dir, litemedsam_checkpoint):
    from ultrasam_training.downstream.run import run_downstream

    work_dir = tmp_path_factory.mktemp("classify") / "run"
    options = _dataset_options(
        ["train_dataloader.dataset", "val_dataloader.dataset", "evaluation.sets.val", "evaluation.sets.test"],
        data_root=str(data_dir),
        encoder=str(litemedsam_checkpoint),
        feature_dir=str(REPO_ROOT / "work_dirs/cache/downstream_features_smoke"),
    )
    return run_downstream("classify", "downstream_classify_smoke", work_dir=work_dir, cfg_options=options)


def test_classification_smoke_lowers_the_loss_and_reports(smoke_run):
    losses = _losses(smoke_run)
    assert sorted(losses) == list(range(1, 9))
    assert losses[8] < 0.8 * losses[1], losses
    results = smoke_run / "results"
    summary = json.loads((results / "summary.json").read_text())
    assert set(summary["sets"]) == {"val", "test"}
    for estimate in summary["sets"]["test"].values():
        assert estimate["n"] == 6 and estimate["low"] <= estimate["value"] <= estimate["high"]
    assert summary["cost"]["trainable_parameters"] == 320 * 3 + 3  # the linear head only
    assert summary["cost"]["seconds_per_iteration"] > 0
    assert "best_busi_macro_f1" in summary["meta"]["selected"]
    with open(results / "predictions" / "test.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and {r["label"] for r in rows} == {"benign", "malignant", "normal"}
    probabilities = np.array([[float(r[f"p_{c}"]) for c in ("benign", "malignant", "normal")] for r in rows])
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    for name in ("summary.md", "summary.csv", "confusion_test.png", "roc_test.png", "roc_val.png"):
        assert (results / name).stat().st_size > 100
    assert "not a diagnosis" in (results / "summary.md").read_text()


def test_feature_cache_is_reused_for_the_same_encoder_and_rebuilt_for_another(
    tmp_path, data_dir, litemedsam_checkpoint
):
    from ultrasam.checkpoints import extract_state_dict, read_checkpoint
    from ultrasam_training.downstream import busi
    from ultrasam_training.downstream.feature_cache import pooled_features
    from ultrasam_training.train.dataset import read_rgb
    from ultrasam_training.train.export import save_state_dict

    item = busi.classification_items(data_dir, "val", per_class=1)[0]
    moved = tmp_path / "renamed copy.png"
    shutil.copy(item.path, moved)  # same bytes, another path: still a cache hit
    cache = tmp_path / "cache"
    first = pooled_features([item.path], read_rgb, str(litemedsam_checkpoint), None, cache, progress=False)
    assert (first.computed, first.reused) == (1, 0)
    again = pooled_features([moved], read_rgb, str(litemedsam_checkpoint), None, cache, progress=False)
    assert (again.computed, again.reused) == (0, 1)
    assert np.array_equal(again.arrays["pre_neck"], first.arrays["pre_neck"])

    state = dict(extract_state_dict(read_checkpoint(litemedsam_checkpoint)))
    key = "image_encoder.neck.0.weight"
    state[key] = state[key] * 1.5  # another encoder: same architecture, changed weights
    changed = save_state_dict(state, tmp_path / "changed.safetensors", family="litemedsam")
    rebuilt = pooled_features([item.path], read_rgb, str(changed), None, cache, progress=False)
    assert (rebuilt.computed, rebuilt.reused) == (1, 0)
    assert rebuilt.folder != first.folder
    assert np.allclose(rebuilt.arrays["pre_neck"], first.arrays["pre_neck"])  # pre-neck untouched by the neck change
    assert not np.allclose(rebuilt.arrays["neck"], first.arrays["neck"])

    edited = tmp_path / "edited.png"
    edited.write_bytes(moved.read_bytes() + b"\0")  # different content (a trailing byte PNG readers ignore)
    third = pooled_features([moved, edited], read_rgb, str(litemedsam_checkpoint), None, cache, progress=False)
    assert (third.computed, third.reused) == (1, 1)

    random = pooled_features([item.path], read_rgb, str(litemedsam_checkpoint), None, cache, progress=False, random_init=0)
    assert random.folder not in (first.folder, rebuilt.folder) and random.computed == 1  # its own weights, own folder
    assert not np.allclose(random.arrays["pre_neck"], first.arrays["pre_neck"])
    same_seed = pooled_features([moved], read_rgb, str(litemedsam_checkpoint), None, cache, progress=False, random_init=0)
    assert same_seed.folder == random.folder and same_seed.reused == 1  # seeded: the same random encoder again


def test_levels_descriptor_is_every_stage_mean_and_upgrades_old_entries(tmp_path, data_dir, litemedsam_checkpoint):
    """``levels`` = the masked mean of each TinyViT stage, concatenated (64+128+160+320); its last
    block is the pre-neck descriptor. An entry written without it (the prompt pass stores pre-neck and
    neck only) serves runs that need only those and is encoded again for a run that needs levels."""
    import torch

    from ultrasam_training.downstream import busi
    from ultrasam_training.downstream.encoders import EncoderFeatures, masked_mean, open_encoder, valid_fractions
    from ultrasam_training.downstream.feature_cache import cache_folder, pooled_features, store_unflipped
    from ultrasam.transforms import prepare_input, resized_shape
    from ultrasam_training.train.dataset import read_rgb

    item = busi.classification_items(data_dir, "val", per_class=1)[0]
    cache = tmp_path / "cache"
    model = open_encoder(str(litemedsam_checkpoint), family=None, fast=True)
    folder = cache_folder(cache, model.sam.image_encoder, model.spec.family)
    store_unflipped(folder, item.path, np.zeros(320), np.zeros(256))  # a pre-levels entry (made-up values)
    old = pooled_features([item.path], read_rgb, str(litemedsam_checkpoint), None, cache, progress=False)
    assert (old.computed, old.reused) == (0, 1) and not old.arrays["pre_neck"].any()
    new = pooled_features([item.path], read_rgb, str(litemedsam_checkpoint), None, cache, progress=False, pools=("levels",))
    assert (new.computed, new.reused) == (1, 0) and new.arrays["levels"].shape == (1, 1, 672)

    rgb = read_rgb(item.path)  # the same descriptor computed independently, stage by stage
    features = EncoderFeatures(model.sam.image_encoder.eval())
    valid = torch.tensor([valid_fractions(resized_shape(*rgb.shape[:2], model.spec), model.spec.image_size)])
    with torch.inference_mode():
        out = features(prepare_input(rgb, model.spec)[0], with_levels=True, with_neck=True)
    assert [level.shape[1] for level in out.levels] == [64, 128, 160, 320]
    expected = torch.cat([masked_mean(level, valid) for level in out.levels], 1)[0].numpy()
    np.testing.assert_allclose(new.arrays["levels"][0, 0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new.arrays["levels"][0, 0, -320:], new.arrays["pre_neck"][0, 0], rtol=1e-6)


def test_imagenet_baseline_without_local_weights_is_skipped_with_a_message(tmp_path, monkeypatch):
    from ultrasam_training.downstream.run import run_downstream

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache: nothing to find
    work_dir = run_downstream("classify", "downstream_classify_resnet50", work_dir=tmp_path / "run")
    message = (work_dir / "results" / "skipped.md").read_text()
    assert "ResNet-50 weights not found" in message and "cannot be downloaded" in message
    assert not (work_dir / "results" / "summary.md").exists()


def test_head_init_starts_the_head_from_another_runs_checkpoint(tmp_path):
    """LP-FT: the head of a run's selected checkpoint (file or run folder) starts a new run's head;
    a head of another shape is refused, naming both."""
    import torch

    from ultrasam_training.downstream.classification import DownstreamClassifier
    from ultrasam_training.train.errors import TrainingError

    head = dict(hidden=(), standardize=True)
    probe = DownstreamClassifier(num_classes=3, cached=True, feature_dim=16, head=head)
    with torch.no_grad():
        for tensor in probe.head.state_dict().values():
            tensor.copy_(torch.randn_like(tensor))
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"meta": {"iter": 7}, "state_dict": probe.state_dict()}, run / "best_busi_macro_f1_iter_7.pth")
    features = torch.randn(5, 16)
    for source in (run, run / "best_busi_macro_f1_iter_7.pth"):
        started = DownstreamClassifier(num_classes=3, cached=True, feature_dim=16, head=head, head_init=str(source))
        assert torch.equal(started(features, mode="tensor"), probe(features, mode="tensor"))
    fresh = DownstreamClassifier(num_classes=3, cached=True, feature_dim=16, head=head)
    assert not torch.equal(fresh(features, mode="tensor"), probe(features, mode="tensor"))
    with pytest.raises(TrainingError, match="does not fit"):
        DownstreamClassifier(num_classes=3, cached=True, feature_dim=8, head=head, head_init=str(run))
    (run / "best_busi_macro_f1_iter_9.pth").write_bytes((run / "best_busi_macro_f1_iter_7.pth").read_bytes())
    with pytest.raises(TrainingError, match="expected one"):
        DownstreamClassifier(num_classes=3, cached=True, feature_dim=16, head=head, head_init=str(run))


def _custom_key_configs() -> list[str]:
    from mmengine.config import Config

    from ultrasam_training.train.runner import CONFIG_DIR

    names = []
    for path in sorted(CONFIG_DIR.glob("downstream_classify_*_litemedsam.py")):
        if Config.fromfile(path).optim_wrapper.get("paramwise_cfg", {}).get("custom_keys"):
            names.append(path.stem)
    return names


@pytest.mark.parametrize("name", _custom_key_configs())
def test_every_per_parameter_learning_rate_of_a_config_reaches_its_parameters(name, litemedsam_checkpoint):
    """A custom key that names no parameter silently trains at the base rate (mmengine matches substrings):
    each key of the LP-FT configs must reach trainable parameters, and those must get the key's rate."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS

    import ultrasam_training.downstream.classification  # noqa: F401  (registers the model)
    from ultrasam_training.train.runner import load_config

    cfg = load_config(name)
    cfg.model.update(encoder=str(litemedsam_checkpoint), head_init=None)
    model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    base_lr = cfg.optim_wrapper.optimizer.lr
    rates = {}
    for group in wrapper.optimizer.param_groups:
        for param in group["params"]:
            rates[id(param)] = group["lr"]
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    keys = cfg.optim_wrapper.paramwise_cfg.custom_keys
    for key, options in keys.items():
        matched = [n for n in trainable if key in n]
        assert matched, f"{name}: custom key {key!r} matches no trainable parameter"
        # mmengine applies the longest matching key; check the parameters whose longest key is this one
        own = [n for n in matched if max((k for k in keys if k in n), key=len) == key]
        assert own and all(rates[id(trainable[n])] == pytest.approx(base_lr * options["lr_mult"]) for n in own), key
    if name == "downstream_classify_finetune_lpft_litemedsam":
        assert rates[id(trainable["head.1.weight"])] == pytest.approx(1e-4)
        assert rates[id(trainable["features.encoder.patch_embed.seq.0.c.weight"])] == pytest.approx(5e-6)
