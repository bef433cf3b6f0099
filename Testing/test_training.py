"""Training pipeline: prompt simulation, targets, the two-pass objective, and real mmengine runs.

The hand-computed loss values, prompt statistics and geometry below are derived in the tests
themselves; the runs use the ``smoke`` config (LiteMedSAM, 4 real BUSI frames, cached embeddings).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mmengine")

from ultrasam_training.train import prompts as P  # noqa: E402
from ultrasam_training.train.losses import (  # noqa: E402
    dice_loss,
    iou_mse,
    pass_losses,
    select_by_true_iou,
    sigmoid_focal_loss,
    true_iou,
)
from ultrasam_training.train.targets import low_res_targets, masks_to_frame  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- prompt simulation
def _blob_mask() -> np.ndarray:
    mask = np.zeros((60, 80), bool)
    mask[10:30, 20:50] = True  # 20 rows x 30 columns
    mask[30:40, 20:25] = True  # an L-shaped foot
    return mask


def test_box_jitter_stays_within_five_percent_and_is_centred_on_the_gt_box():
    box = np.array([20.0, 10.0, 50.0, 40.0])  # w = 30, h = 30
    rng = np.random.default_rng(0)
    draws = np.stack([P.jittered_box(box, rng) for _ in range(4000)])
    w, h = 30.0, 30.0
    offsets = draws - box
    assert np.all(np.abs(offsets[:, [0, 2]]) <= 0.05 * w + 1e-9)
    assert np.all(np.abs(offsets[:, [1, 3]]) <= 0.05 * h + 1e-9)
    # the full ±5 % range is used, independently per corner
    assert offsets[:, 0].max() > 0.045 * w and offsets[:, 0].min() < -0.045 * w
    assert abs(np.corrcoef(offsets[:, 0], offsets[:, 2])[0, 1]) < 0.1
    # no +0.5 on our side: segment_anything adds it, and then sees GT + jitter + 0.5 as the original did
    assert np.allclose(offsets.mean(axis=0), 0.0, atol=0.03)


def test_training_points_are_foreground_pixels_plus_subpixel_jitter():
    mask = _blob_mask()
    boxes = P.gt_box(mask)[None]
    rng = np.random.default_rng(1)
    fractions = []
    for _ in range(500):
        prompts = P.sample_training_prompts(mask[None], boxes, rng, point_probability=1.0)
        x, y = prompts.coords[0, 0] + 0.5  # segment_anything adds 0.5: this is the original's value
        assert mask[int(np.floor(y)), int(np.floor(x))], "the point before jitter must be a foreground pixel"
        fractions += [x - np.floor(x), y - np.floor(y)]
        assert prompts.labels[0].tolist() == [P.POSITIVE, P.NOT_A_POINT]
        assert prompts.coords[0, 1].tolist() == [0.0, 0.0]
    fractions = np.array(fractions)
    assert 0.45 < fractions.mean() < 0.55 and fractions.min() < 0.05 and fractions.max() > 0.95


def test_point_or_box_is_drawn_half_and_half():
    mask = _blob_mask()
    rng = np.random.default_rng(2)
    masks = np.repeat(mask[None], 50, axis=0)
    boxes = np.repeat(P.gt_box(mask)[None], 50, axis=0)
    kinds = np.concatenate([P.sample_training_prompts(masks, boxes, rng).kinds for _ in range(80)])
    assert abs((kinds == P.POINT).mean() - 0.5) < 0.03
    assert set(np.unique(kinds)) == {P.POINT, P.BOX}


def test_prompts_are_a_function_of_seed_and_draw():
    mask = _blob_mask()
    args = (mask[None].repeat(4, 0), P.gt_box(mask)[None].repeat(4, 0))
    first = P.sample_training_prompts(*args, P.prompt_rng(7, 123))
    again = P.sample_training_prompts(*args, P.prompt_rng(7, 123))
    other = P.sample_training_prompts(*args, P.prompt_rng(7, 124))
    assert np.array_equal(first.coords, again.coords) and np.array_equal(first.kinds, again.kinds)
    assert not np.array_equal(first.coords, other.coords)


def test_centroid_is_the_mean_of_the_foreground_coordinates():
    mask = np.zeros((5, 6), bool)
    mask[1, 1] = mask[1, 4] = mask[3, 4] = True  # rows 1,1,3 -> 5/3; cols 1,4,4 -> 3
    assert np.allclose(P.centroid_point(mask), [3.0, 5.0 / 3.0])


def test_inside_point_is_inside_a_ring_whose_centroid_is_not():
    yy, xx = np.mgrid[:41, :41]
    radius = np.hypot(yy - 20, xx - 20)
    ring = (radius > 10) & (radius < 16)
    cx, cy = P.centroid_point(ring)
    assert not ring[int(round(cy)), int(round(cx))]
    x, y = P.inside_point(ring)
    assert ring[int(y), int(x)]


def test_evaluation_prompts_in_the_model_frame_are_scaled_without_offset():
    mask = _blob_mask()
    scale = np.array([2.0, 3.0])
    box = P.model_frame_eval_prompts(mask[None], "box", scale)
    assert np.allclose(box.coords[0].ravel(), P.gt_box(mask) * np.tile(scale, 2))
    point = P.model_frame_eval_prompts(mask[None], "point", scale)
    assert np.allclose(point.coords[0, 0], P.centroid_point(mask) * scale)


def test_a_mask_lost_in_the_resize_still_yields_a_point_inside_its_original_pixels():
    original = np.zeros((10, 10), bool)
    original[4, 6] = True
    frame = masks_to_frame(original[None], (2, 2))[0]  # 5x downscale, the pixel vanishes
    assert not frame.any()
    scale = np.array([0.2, 0.2])
    point = P.random_foreground_point(frame, np.random.default_rng(0), original, scale) + 0.5
    assert 6 * 0.2 <= point[0] < 7 * 0.2 and 4 * 0.2 <= point[1] < 5 * 0.2


# ----------------------------------------------------------------------------- targets
def test_low_res_targets_pad_then_bilinear_downsample_and_round():
    frame = np.zeros((1, 6, 8), bool)
    frame[0, 0:4, 0:4] = True  # a 4x4 block in an 8x8 input
    target = low_res_targets(frame, input_size=8, size=4)
    # 2x bilinear downsample (align_corners=False) averages 2x2 blocks: the block maps to 2x2 ones
    expected = np.zeros((4, 4))
    expected[:2, :2] = 1
    assert np.array_equal(target[0].numpy(), expected)
    assert low_res_targets(frame, input_size=8, size=8)[0, :6].sum() == 16  # no resample at equal size


# ----------------------------------------------------------------------------- losses
def test_focal_dice_and_mse_on_a_two_by_two_case():
    logits = torch.tensor([[[0.0, 2.0], [-1.0, 3.0]]])
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    probs = [0.5, 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1)), 1 / (1 + math.exp(-3))]
    truth = [1, 0, 0, 1]
    focal = 0.0
    for p, t in zip(probs, truth):
        bce = -math.log(p) if t else -math.log(1 - p)
        p_wrong = 1 - p if t else p
        focal += (0.25 if t else 0.75) * p_wrong**2 * bce
    assert sigmoid_focal_loss(logits, target).item() == pytest.approx(focal / 4, rel=1e-5)
    intersection = probs[0] + probs[3]
    dice = 1 - 2 * intersection / (sum(p * p for p in probs) + 1 + 2 + 1)
    assert dice_loss(logits, target).item() == pytest.approx(dice, rel=1e-5)
    assert iou_mse(torch.tensor([0.9, 0.2]), torch.tensor([0.5, 0.0])).item() == pytest.approx((0.16 + 0.04) / 2)


def test_true_iou_thresholds_sigmoid_at_one_half():
    target = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    logits = torch.tensor([[[[5.0, -5.0], [5.0, -5.0]]]])  # predicts the left column
    assert true_iou(logits, target).item() == pytest.approx(1 / 3)
    empty = torch.full((1, 1, 2, 2), -1.0)
    assert true_iou(empty, torch.zeros(1, 2, 2)).item() == 0.0  # union clamped, not NaN


def test_selection_uses_the_true_iou_and_supervises_that_index_only():
    target = torch.zeros(1, 4, 4)
    target[0, :2, :2] = 1
    candidates = torch.full((1, 3, 4, 4), -4.0)
    candidates[0, 0, :, :2] = 4.0  # IoU 0.5
    candidates[0, 1, :2, :2] = 4.0  # IoU 1.0
    candidates[0, 2, 0, 0] = 4.0  # IoU 0.25
    predicted = torch.tensor([[0.9, 0.1, 0.8]])  # the IoU head prefers the wrong mask
    chosen = select_by_true_iou(candidates, predicted, target)
    assert chosen.index.tolist() == [1]
    assert chosen.true_iou.item() == pytest.approx(1.0) and chosen.predicted_iou.item() == pytest.approx(0.1)
    losses, _ = pass_losses(candidates, predicted, target, suffix=".0")
    assert losses["loss_iou.0"].item() == pytest.approx((0.1 - 1.0) ** 2)
    assert losses["loss_focal.0"].item() == pytest.approx(20 * sigmoid_focal_loss(candidates[:, 1], target).item())
    assert set(losses) == {"loss_focal.0", "loss_dice.0", "loss_iou.0", "iou.0"}


def test_mixed_prompt_embedding_equals_segment_anythings_prompt_encoder():
    from segment_anything.modeling import PromptEncoder

    from ultrasam_training.train.decoding import embed_sparse

    torch.manual_seed(0)
    encoder = PromptEncoder(embed_dim=32, image_embedding_size=(16, 16), input_image_size=(64, 64), mask_in_chans=4)
    for embedding in [encoder.not_a_point_embed, *encoder.point_embeddings]:
        torch.nn.init.normal_(embedding.weight)
    point = torch.tensor([[[10.2, 20.7]]])
    box = torch.tensor([[3.0, 4.0, 30.5, 41.0]])
    with torch.no_grad():
        sam_point, _ = encoder(points=(point, torch.ones(1, 1)), boxes=None, masks=None)
        sam_box, _ = encoder(points=None, boxes=box, masks=None)
        coords = torch.cat([torch.cat([point, torch.zeros(1, 1, 2)], 1), box.reshape(1, 2, 2)])
        labels = torch.tensor([[P.POSITIVE, P.NOT_A_POINT], [P.CORNER_A, P.CORNER_B]])
        mixed = embed_sparse(encoder, coords, labels)
    assert torch.allclose(mixed[0], sam_point[0], atol=1e-6)
    assert torch.allclose(mixed[1], sam_box[0], atol=1e-6)


# ----------------------------------------------------------------------------- sampler
def test_sampler_stream_is_seekable_and_split_across_ranks():
    from ultrasam_training.train.sampler import SeededStreamSampler

    sampler = SeededStreamSampler(list(range(7)), seed=3)
    stream = [next(it) for it in [iter(sampler)] for _ in range(30)]
    assert [d for _, _, d in stream] == list(range(30))
    assert sorted(i for i, _, _ in stream[:7]) == list(range(7))  # each epoch is a permutation
    sampler.seek(12)
    resumed = iter(sampler)
    assert [next(resumed) for _ in range(18)] == stream[12:]
    sampler.seek(0)
    sampler.rank, sampler.world_size = 1, 2
    rank1 = iter(sampler)
    assert [next(rank1) for _ in range(5)] == stream[1:11:2]


# ----------------------------------------------------------------------------- commands and configs
def test_commands_parse_and_configs_resolve():
    import argparse

    from ultrasam_training.train import cli
    from ultrasam_training.train.errors import TrainingError
    from ultrasam_training.train.runner import find_config, load_config, parse_cfg_options

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["train", "smoke", "--resume", "--cfg-options", "train_cfg.max_iters=6", "--launcher", "pytorch"]
    )
    assert args.resume and args.launcher == "pytorch" and callable(args.func)
    args = parser.parse_args(["test", "ultrasam_lite", "--checkpoint", "a.pth", "litemedsam", "--refine", "on", "off"])
    assert args.checkpoint == ["a.pth", "litemedsam"] and args.refine == ["on", "off"]
    assert parse_cfg_options(["train_cfg.max_iters=6", "model.refine=False", "x=[1,2]"]) == {
        "train_cfg.max_iters": 6,
        "model.refine": False,
        "x": [1, 2],
    }
    with pytest.raises(TrainingError, match="packaged configs"):
        find_config("no_such_config")
    for name in (
        "ultrasam_vitb_paper",
        "ultrasam_vitb_from_ultrasam",
        "ultrasam_star_no_breast",
        "ultrasam_star_no_ovarian",
        "ultrasam_star_no_gi",
        "ultrasam_lite",
        "ultrasam_lite_long",
        "smoke",
    ):
        config = load_config(name)
        assert config.optim_wrapper.optimizer == {"type": "AdamW", "lr": 1e-4, "weight_decay": 1e-4}
        assert config.optim_wrapper.clip_grad == {"max_norm": 0.1, "norm_type": 2}
        assert config.model.loss_weights == {"focal": 20.0, "dice": 1.0, "iou": 1.0}
    paper = load_config("ultrasam_vitb_paper")
    assert paper.train_cfg.max_iters == 30000 and paper.train_dataloader.batch_size == 8
    assert [s.get("milestones") for s in paper.param_scheduler] == [None, [20000, 28888]]
    assert load_config("ultrasam_star_no_gi").train_dataloader.dataset.exclude_organs == ["stomach"]
    lite, long = load_config("ultrasam_lite"), load_config("ultrasam_lite_long")
    assert (lite.train_cfg.max_iters, long.train_cfg.max_iters) == (800, 1600)
    assert [s.get("milestones") for s in long.param_scheduler] == [None, [1067, 1541]]
    assert long.param_scheduler[0]["end"] == 27 and long.model == lite.model


# ----------------------------------------------------------------------------- real data
def test_dataset_inputs_are_bit_exact_with_the_predictor_preprocessing(data_dir):
    from ultrasam.models.spec import FAMILY_SPECS
    from ultrasam.transforms import prepare_input, to_rgb_uint8
    from ultrasam_training.data.images import read_array
    from ultrasam_training.train.dataset import UltraSamCocoDataset

    dataset = UltraSamCocoDataset(
        "shared:val",
        family="litemedsam",
        prompt_mode="box",
        max_images=2,
        shared_data_root=str(data_dir),
        splits_root=str(REPO_ROOT / "work_dirs/data"),
    )
    sample = dataset[0]
    rgb = to_rgb_uint8(read_array(dataset.records[0]["path"]))
    expected, geometry = prepare_input(rgb, FAMILY_SPECS["litemedsam"])
    assert torch.equal(sample["inputs"], expected[0])
    masks = dataset.instance_masks(0)
    assert np.allclose(
        sample["coords"].reshape(-1, 4).numpy(),
        np.stack([P.gt_box(m) for m in masks]) * np.tile(geometry.scale_xy, 2),
        atol=1e-4,
    )
    assert sample["targets"].shape == (len(masks), 256, 256)
    assert set(np.unique(sample["targets"].numpy())) <= {0.0, 1.0}

    train = UltraSamCocoDataset(
        "shared:val",
        family="litemedsam",
        flip_prob=1.0,
        max_images=1,
        shared_data_root=str(data_dir),
        splits_root=str(REPO_ROOT / "work_dirs/data"),
    )
    flipped = train[(0, 0, 5)]
    assert flipped["flipped"]
    spec = FAMILY_SPECS["litemedsam"]
    assert torch.equal(flipped["inputs"], prepare_input(np.ascontiguousarray(rgb[:, ::-1]), spec)[0][0])
    frame = masks_to_frame(masks[:, :, ::-1], geometry.resized_hw)
    assert torch.equal(flipped["targets"], low_res_targets(frame, spec.image_size))


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory, data_dir, litemedsam_checkpoint):
    """One uninterrupted smoke run, and the same run killed after 4 iterations then resumed to the end."""
    from ultrasam_training.train.runner import train

    root = tmp_path_factory.mktemp("smoke")
    common = {
        "train_dataloader.dataset.shared_data_root": str(data_dir),
        "train_dataloader.dataset.splits_root": str(REPO_ROOT / "work_dirs/data"),
        "train_dataloader.dataset.embedding_cache.directory": str(REPO_ROOT / "work_dirs/cache/embeddings_smoke"),
        "model.init_checkpoint": str(litemedsam_checkpoint),
        "train_dataloader.dataset.embedding_cache.checkpoint": str(litemedsam_checkpoint),
    }
    full = train("smoke", work_dir=root / "full", cfg_options=common)
    partial = train("smoke", work_dir=root / "resumed", cfg_options={**common, "train_cfg.max_iters": 6})
    stopped_at = sorted(p.name for p in partial.glob("iter_*.pth"))
    train("smoke", work_dir=root / "resumed", cfg_options=common, resume=True)
    return {"full": full, "resumed": partial, "stopped_at": stopped_at}


def _records(work_dir: Path) -> dict[int, dict]:
    records = {}
    for scalars in sorted(work_dir.glob("*/vis_data/scalars.json")):
        for line in scalars.read_text().splitlines():
            record = json.loads(line)
            if "lr" in record:
                records[record["iter"]] = record
    return records


def test_smoke_training_lowers_the_loss(smoke_runs):
    records = _records(smoke_runs["full"])
    losses = [records[i]["loss"] for i in sorted(records)]
    assert len(losses) == 12
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.2, losses
    assert (smoke_runs["full"] / "training_curves.png").stat().st_size > 10_000
    info = json.loads((smoke_runs["full"] / "run_info.json").read_text())
    assert info[0]["seed"] == 0


def test_resume_continues_at_the_same_iteration_lr_and_loss(smoke_runs):
    assert smoke_runs["stopped_at"] == ["iter_6.pth"]
    full, resumed = _records(smoke_runs["full"]), _records(smoke_runs["resumed"])
    assert sorted(resumed) == sorted(full) == list(range(1, 13))
    for iteration in range(7, 13):
        assert resumed[iteration]["lr"] == pytest.approx(full[iteration]["lr"], rel=1e-9)
        assert resumed[iteration]["loss"] == pytest.approx(full[iteration]["loss"], rel=1e-4, abs=1e-5)
    assert resumed[7]["loss_dice.0"] == pytest.approx(full[7]["loss_dice.0"], rel=1e-4, abs=1e-5)


def test_curves_after_a_resume_join_all_runs(smoke_runs):
    from ultrasam_training.train.plot import read_work_dir_scalars

    joined = read_work_dir_scalars(smoke_runs["resumed"])
    assert [r["iter"] for r in joined] == list(range(1, 13))
    assert len(list(smoke_runs["resumed"].glob("*/vis_data/scalars.json"))) == 2
    assert (smoke_runs["resumed"] / "training_curves.png").stat().st_size > 10_000


def test_a_later_run_replaces_what_a_killed_run_logged_after_the_resume_point(tmp_path):
    from ultrasam_training.train.plot import plot_curves, read_work_dir_scalars

    def log(run: str, iterations: range, loss: float) -> None:
        folder = tmp_path / run / "vis_data"
        folder.mkdir(parents=True)
        lines = [json.dumps({"iter": i, "lr": 1e-4, "loss": loss}) for i in iterations]
        lines.insert(1, json.dumps({"iter": 3, "val/busi_box_dice": 0.9}))  # a validation record: ignored
        (folder / "scalars.json").write_text("\n".join(lines) + "\n")

    log("20260101_100000", range(1, 11), loss=1.0)  # killed after logging 10, last checkpoint at 5
    log("20260101_110000", range(6, 13), loss=0.5)  # resumed from iter_5
    joined = read_work_dir_scalars(tmp_path)
    assert [r["iter"] for r in joined] == list(range(1, 13))
    assert [r["loss"] for r in joined] == [1.0] * 5 + [0.5] * 7
    assert plot_curves(tmp_path, tmp_path / "curves.png").stat().st_size > 10_000
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no training records"):
        plot_curves(tmp_path / "empty", tmp_path / "x.png")


def test_final_weights_load_in_the_predictor_and_export_matches(smoke_runs, data_dir):
    from ultrasam.models import load_model
    from ultrasam.predictor import Predictor
    from ultrasam_training.train.export import export_checkpoint
    from ultrasam_training.train.dataset import read_rgb

    from safetensors.torch import load_file

    weights = smoke_runs["full"] / "model_final.safetensors"
    state = load_file(weights)  # plain safetensors: any reader opens it, no pickle involved
    assert any(k.startswith("mask_decoder.") for k in state)
    model = load_model(weights)
    assert model.spec.family == "litemedsam"
    image = read_rgb(next((data_dir / "busi/Dataset_BUSI_with_GT/benign").glob("*).png")))
    predictor = Predictor(model)
    predictor.set_image(image)
    h, w = image.shape[:2]
    prediction = predictor.predict(box=np.array([w * 0.3, h * 0.3, w * 0.7, h * 0.7]), refine=True)
    assert prediction.mask.shape == (h, w)

    exported = export_checkpoint(smoke_runs["full"] / "iter_12.pth", smoke_runs["full"] / "exported.safetensors")
    again = load_file(exported)
    assert again.keys() == state.keys() and all(torch.equal(again[k], state[k]) for k in state)
    with pytest.raises(Exception, match="exists"):
        export_checkpoint(smoke_runs["full"] / "iter_12.pth", exported)


def test_config_evaluation_runs_through_the_predictor_for_several_models(smoke_runs, data_dir, litemedsam_checkpoint):
    from ultrasam_training.train.run_eval import run_evaluation

    options = [f"evaluation.shared_data_root={data_dir}", f"evaluation.splits_root={REPO_ROOT / 'work_dirs/data'}"]
    results = run_evaluation(
        "smoke",
        [smoke_runs["full"] / "model_final.safetensors", litemedsam_checkpoint],
        cfg_options=options,
        prompts=["box"],
        refine=["off"],
        max_images=3,
        progress=False,
    )
    by_model = {r.model: r for r in results}
    assert len(by_model) == 2 and len({r.summary["n"] for r in results}) == 1
    baseline = next(r for m, r in by_model.items() if "model_final" not in m)
    assert baseline.summary["mean Dice"] > 0.6, baseline.line()  # LiteMedSAM, exact GT boxes, BUSI (0.92 on test)
    assert 0.0 <= baseline.summary["mAP"] <= baseline.summary["mAP@50"] <= 1.0
    assert all(r.refine is False for r in results)


def test_ultrasam_evaluate_reads_an_mmengine_training_checkpoint(smoke_runs, data_dir):
    """``iter_N.pth`` (mmengine container) and the exported ``model_final.safetensors`` of the last iteration score alike."""
    from ultrasam_training.evaluation.dataset import EvalDataset
    from ultrasam_training.evaluation.runner import evaluate_dataset
    from ultrasam_training.evaluation.segmenters import load_segmenter

    last = max(smoke_runs["full"].glob("iter_*.pth"), key=lambda p: int(p.stem.split("_")[1]))
    dataset = EvalDataset.load(REPO_ROOT / "work_dirs/data/annotations/val.json", limit=2)
    scores = [
        evaluate_dataset(load_segmenter(path, refine=False), dataset, ["point"], progress=False)[0]
        for path in (last, smoke_runs["full"] / "model_final.safetensors")
    ]
    assert scores[0].model == last.stem
    assert [r.dice for r in scores[0].records] == [r.dice for r in scores[1].records]


def test_an_interrupted_embedding_cache_continues_where_it_stopped(tmp_path, data_dir, litemedsam_checkpoint):
    from ultrasam.models import load_model
    from ultrasam.predictor import Predictor
    from ultrasam_training.train.dataset import read_rgb
    from ultrasam_training.train.embeddings import build_embedding_cache

    path = next((data_dir / "busi/Dataset_BUSI_with_GT/malignant").glob("*).png"))
    calls = []

    def killed_at_the_flip(source: Path):  # 1st call: shape probe, 2nd: unflipped, 3rd: flipped
        calls.append(source)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return read_rgb(source)

    with pytest.raises(RuntimeError, match="killed"):
        build_embedding_cache(
            [path], killed_at_the_flip, litemedsam_checkpoint, "litemedsam", tmp_path, batch_size=1, progress=False
        )
    calls.clear()
    cache = build_embedding_cache(
        [path],
        lambda p: calls.append(p) or read_rgb(p),
        litemedsam_checkpoint,
        "litemedsam",
        tmp_path,
        batch_size=1,
        progress=False,
    )
    assert len(calls) == 2  # the probe and the flipped image only: the unflipped one was kept
    predictor = Predictor(load_model(litemedsam_checkpoint))
    predictor.set_image(np.ascontiguousarray(read_rgb(path)[:, ::-1]))
    assert torch.allclose(cache.get(0, True), predictor.embedding[0], atol=1e-4)
    assert cache.get(0, False).abs().sum() > 0


def test_the_embedding_cache_survives_a_touch_but_not_an_edit(tmp_path, data_dir, litemedsam_checkpoint):
    """Keyed by content: new modification times reuse the cache, new bytes rebuild it."""
    import os
    import shutil

    import SimpleITK as sitk

    from ultrasam_training.train.dataset import read_rgb
    from ultrasam_training.train.embeddings import build_embedding_cache

    source = next((data_dir / "busi/Dataset_BUSI_with_GT/malignant").glob("*).png"))
    path = tmp_path / "image.png"
    shutil.copyfile(source, path)
    calls = []

    def build():
        return build_embedding_cache(
            [path],
            lambda p: calls.append(p) or read_rgb(p),
            litemedsam_checkpoint,
            "litemedsam",
            tmp_path / "cache",
            batch_size=1,
            progress=False,
        )

    build()
    assert len(calls) == 3  # probe, unflipped, flipped
    os.utime(path, ns=(0, 0))  # as after the data folder is laid out again
    calls.clear()
    build()
    assert calls == []
    image = read_rgb(path).copy()
    image[0, 0] = 255 - image[0, 0]
    sitk.WriteImage(sitk.GetImageFromArray(image, isVector=True), str(path))
    calls.clear()
    cache = build()
    assert len(calls) == 3
    assert cache.get(0, False).abs().sum() > 0


@pytest.fixture(scope="module")
def smoke_v2_runs(tmp_path_factory, data_dir, litemedsam_checkpoint):
    """The UltraSam-Lite v2 recipe in small: click rounds + trained neck; full, and killed at 6 then resumed."""
    from ultrasam_training.train.runner import train

    root = tmp_path_factory.mktemp("smoke_v2")
    common = {
        "train_dataloader.dataset.shared_data_root": str(data_dir),
        "train_dataloader.dataset.splits_root": str(REPO_ROOT / "work_dirs/data"),
        "train_dataloader.dataset.embedding_cache.directory": str(REPO_ROOT / "work_dirs/cache/embeddings_smoke"),
        "model.init_checkpoint": str(litemedsam_checkpoint),
        "train_dataloader.dataset.embedding_cache.checkpoint": str(litemedsam_checkpoint),
    }
    full = train("smoke_v2", work_dir=root / "full", cfg_options=common)
    partial = train("smoke_v2", work_dir=root / "resumed", cfg_options={**common, "train_cfg.max_iters": 6})
    train("smoke_v2", work_dir=root / "resumed", cfg_options=common, resume=True)
    return {"full": full, "resumed": partial}


def test_click_rounds_train_and_resume_exactly(smoke_v2_runs):
    full, resumed = _records(smoke_v2_runs["full"]), _records(smoke_v2_runs["resumed"])
    assert sorted(full) == sorted(resumed) == list(range(1, 13))
    assert {full[i]["clicks"] for i in full} <= {1.0, 2.0, 3.0} and len({full[i]["clicks"] for i in full}) > 1
    for iteration in range(7, 13):  # the same clicks were simulated after the resume
        for key in ("clicks", "loss", "loss_dice.clicks", "iou.clicks"):
            assert resumed[iteration][key] == pytest.approx(full[iteration][key], rel=1e-4, abs=1e-5), key
    first = np.mean([full[i]["loss_dice.clicks"] for i in range(1, 5)])
    last = np.mean([full[i]["loss_dice.clicks"] for i in range(9, 13)])
    assert last < first, (first, last)


def test_only_the_neck_of_the_encoder_is_adapted(smoke_v2_runs, litemedsam_checkpoint):
    from ultrasam.models import open_model

    base = open_model(litemedsam_checkpoint, device="cpu").sam.state_dict()
    tuned = open_model(smoke_v2_runs["full"] / "model_final.safetensors", device="cpu").sam.state_dict()
    changed = {key for key in base if not torch.equal(base[key], tuned[key])}
    assert any(key.startswith("image_encoder.neck.") for key in changed)
    assert not any(key.startswith("image_encoder.") and ".neck." not in f".{key}" for key in changed)
    assert any(key.startswith("mask_decoder.") for key in changed)
