"""The evaluator (``ultrasam evaluate``): metrics, prompts, click simulation, reports, CLI, one real run.

Expected values are worked out by hand in the tests (COCO AP over thresholds, click positions),
never produced by the code under test.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pycocotools import mask as mask_utils

from ultrasam_training.evaluation import EvaluationError, evaluate, evaluate_dataset
from ultrasam_training.evaluation.clicks import Click, next_click, number_of_clicks, simulate_clicks
from ultrasam_training.evaluation.dataset import EvalDataset
from ultrasam_training.evaluation.metrics import coco_segm_map, dice, encode_rle, iou
from ultrasam_training.evaluation.prompts import centroid_point, coco_box, interior_point
from ultrasam_training.evaluation.segmenters import EllipseBaseline, FilledBoxBaseline, Segmentation


# --------------------------------------------------------------------------- helpers
def disk(shape: tuple[int, int], centre_xy: tuple[float, float], radius: float) -> np.ndarray:
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (cols - centre_xy[0]) ** 2 + (rows - centre_xy[1]) ** 2 <= radius**2


def rectangle(shape: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = True
    return mask


class DiskClickOracle:
    """Test double for the click simulator: the 'model' answers with the union of disks around the
    positive clicks minus disks around the negative ones, and records what it was given."""

    def __init__(self, shape: tuple[int, int], radius: float) -> None:
        self.shape, self.radius = shape, radius
        self.calls: list[dict] = []

    def __call__(self, points, labels, mask_input):
        mask = np.zeros(self.shape, bool)
        for (x, y), label in zip(points, labels):
            if label == 1:
                mask |= disk(self.shape, (x, y), self.radius)
        for (x, y), label in zip(points, labels):
            if label == 0:
                mask &= ~disk(self.shape, (x, y), self.radius)
        logits = np.full((256, 256), float(len(self.calls)), np.float32)  # tagged with the call number
        self.calls.append({"points": np.array(points), "labels": np.array(labels), "mask_input": mask_input})
        return Segmentation(mask=mask, score=1.0, logits=logits)


class IgnoringOracle(DiskClickOracle):
    """Test double: a 'model' that never segments anything, whatever it is clicked."""

    def __call__(self, points, labels, mask_input):
        result = super().__call__(points, labels, mask_input)
        return Segmentation(mask=np.zeros(self.shape, bool), score=0.0, logits=result.logits)


def write_synthetic_coco(root: Path, boxes_per_image: list[list[tuple[int, int, int, int]]], size=(60, 80)) -> Path:
    """Images with rectangles (x, y, w, h) as GT instances, in the project's layout (root/annotations/)."""
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    rng = np.random.default_rng(0)
    for index, boxes in enumerate(boxes_per_image, start=1):
        pixels = rng.integers(0, 60, size=size, dtype=np.uint8)
        for x, y, w, h in boxes:
            pixels[y : y + h, x : x + w] = 200
        Image.fromarray(pixels).save(root / "images" / f"im{index}.png")
        images.append({"id": index, "file_name": f"images/im{index}.png", "height": size[0], "width": size[1]})
        for x, y, w, h in boxes:
            mask = np.zeros(size, bool)
            mask[y : y + h, x : x + w] = True
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index,
                    "category_id": 1,
                    "iscrowd": 0,
                    "segmentation": encode_rle(mask),
                    "area": w * h,
                    "bbox": [x, y, w, h],
                }
            )
    path = root / "annotations" / "synthetic.json"
    path.parent.mkdir()
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "object"}]})
    )
    return path


# --------------------------------------------------------------------------- metrics
def test_dice_and_iou_on_hand_cases():
    truth = rectangle((6, 6), (1, 2), (1, 4))  # 2 x 4 = 8 pixels
    half = rectangle((6, 6), (1, 2), (1, 2))  # 4 of them
    assert dice(half, truth) == pytest.approx(2 * 4 / (4 + 8))
    assert iou(half, truth) == pytest.approx(4 / 8)
    shifted = rectangle((6, 6), (2, 3), (1, 4))  # overlaps one row of 4: union 12
    assert iou(shifted, truth) == pytest.approx(4 / 12)
    assert dice(shifted, truth) == pytest.approx(8 / 16)
    empty = np.zeros((6, 6), bool)
    assert dice(empty, truth) == 0.0 and iou(empty, truth) == 0.0
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    with pytest.raises(EvaluationError):
        dice(np.zeros((5, 6), bool), truth)


def _instance_with_iou(k: int) -> tuple[np.ndarray, np.ndarray]:
    """A 10x10 GT square in a 20x20 image and a prediction of its first k pixels: IoU = k/100 exactly."""
    truth = rectangle((20, 20), (5, 14), (5, 14))
    prediction = truth.copy()
    rows, cols = np.nonzero(truth)
    prediction[rows[: 100 - k], cols[: 100 - k]] = False
    return truth, prediction


def test_coco_map_matches_hand_computed_average_precision():
    # Four instances (one per image) with IoU 0.96 / 0.72 / 0.57 / 0.30, scored 0.8 / 0.7 / 0.6 / 0.9.
    # Ranked by score the IoUs are [0.30, 0.96, 0.72, 0.57]; 4 GT; COCO interpolates precision at
    # 101 recall points (0, 0.01, ..., 1) with the right-to-left maximum of precision.
    # * t = 0.50, 0.55: hits [0,1,1,1] -> precision [0, 1/2, 2/3, 3/4], recall up to 0.75;
    #   envelope 3/4 at recall 0..0.75 = 76 points -> AP = 76 * 3/4 / 101 = 57/101.
    # * t = 0.60, 0.65, 0.70: hits [0,1,1,0] -> envelope 2/3 up to recall 0.50 = 51 points -> 34/101.
    # * t = 0.75 ... 0.95 (5 thresholds): hits [0,1,0,0] -> envelope 1/2 up to recall 0.25 = 26 points -> 13/101.
    # mAP = (2 * 57 + 3 * 34 + 5 * 13) / (10 * 101) = 281/1010.
    ious_and_scores = [(96, 0.8), (72, 0.7), (57, 0.6), (30, 0.9)]
    images, annotations, detections = [], [], []
    for image_id, (k, score) in enumerate(ious_and_scores, start=1):
        truth, prediction = _instance_with_iou(k)
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": 20, "width": 20})
        annotations.append(
            {
                "id": image_id,
                "image_id": image_id,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": encode_rle(truth),
                "area": 100,
                "bbox": [5, 5, 10, 10],
            }
        )
        detections.append(
            {"image_id": image_id, "category_id": 1, "segmentation": encode_rle(prediction), "score": score}
        )
    ground_truth = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "object"}]}
    scores = coco_segm_map(ground_truth, detections)
    assert scores["mAP"] == pytest.approx(281 / 1010, abs=1e-9)
    assert scores["mAP@50"] == pytest.approx(57 / 101, abs=1e-9)
    assert scores["mAP@75"] == pytest.approx(13 / 101, abs=1e-9)
    assert coco_segm_map(ground_truth, [])["mAP"] == 0.0


def test_coco_map_is_class_agnostic():
    # Two GT categories, predictions labelled with the other category: still perfect (useCats=0).
    truth, _ = _instance_with_iou(100)
    ground_truth = {
        "images": [{"id": 1, "file_name": "1.png", "height": 20, "width": 20}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 2,
                "iscrowd": 0,
                "segmentation": encode_rle(truth),
                "area": 100,
                "bbox": [5, 5, 10, 10],
            }
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    detections = [{"image_id": 1, "category_id": 1, "segmentation": encode_rle(truth), "score": 0.5}]
    assert coco_segm_map(ground_truth, detections)["mAP"] == pytest.approx(1.0)


def test_rle_encoding_round_trips():
    mask = disk((17, 23), (11, 8), 5)
    rle = encode_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [17, 23]
    assert np.array_equal(mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool), mask)


# --------------------------------------------------------------------------- prompts
def test_centroid_falls_in_the_hole_of_a_ring_but_the_inside_point_does_not():
    ring = disk((61, 61), (30, 30), 15) & ~disk((61, 61), (30, 30), 8)
    cx, cy = centroid_point(ring)
    assert (cx, cy) == pytest.approx((30.0, 30.0))  # symmetric ring: centroid at the centre...
    assert not ring[round(cy), round(cx)]  # ...which is background
    ix, iy = interior_point(ring)
    assert ring[int(iy), int(ix)]
    # the deepest ring pixels lie midway between the radii (8 + 15) / 2 = 11.5 from the centre
    assert np.hypot(ix - 30, iy - 30) == pytest.approx(11.5, abs=1.0)


def test_interior_point_of_an_odd_square_is_its_centre_and_border_counts_as_background():
    assert tuple(interior_point(rectangle((40, 40), (10, 30), (5, 25)))) == (15.0, 20.0)
    # a square touching the image edge: the edge is background, so the point is the square's centre
    assert tuple(interior_point(rectangle((40, 40), (0, 10), (0, 10)))) == (5.0, 5.0)
    with pytest.raises(EvaluationError):
        interior_point(np.zeros((4, 4), bool))


def test_box_prompt_is_the_exact_coco_box():
    assert coco_box({"id": 1, "bbox": [3, 4, 5, 6]}).tolist() == [3.0, 4.0, 8.0, 10.0]
    with pytest.raises(EvaluationError):
        coco_box({"id": 2, "bbox": [3, 4, 0, 6]})


# --------------------------------------------------------------------------- click simulator
def test_next_click_goes_to_the_deeper_or_the_larger_error_region():
    truth = rectangle((40, 80), (5, 34), (5, 34))
    prediction = truth & ~rectangle((40, 80), (15, 19), (15, 19))  # a 5x5 hole: 25 FN pixels, depth 3 at (17, 17)
    prediction |= rectangle((40, 80), (38, 38), (10, 69))  # a 1x60 strip: 60 FP pixels, depth 1
    assert next_click(prediction, truth, rule="distance") == Click(x=17, y=17, positive=True)
    assert next_click(prediction, truth, rule="area") == Click(x=10, y=38, positive=False)
    assert next_click(truth, truth) is None


def test_first_click_at_the_interior_maximum_and_a_perfect_answer_stops_the_run():
    truth = disk((61, 61), (30, 30), 8)
    oracle = DiskClickOracle(truth.shape, radius=8)
    trace = simulate_clicks(oracle, truth, max_clicks=20, stop_iou=0.90, min_clicks=10)
    assert trace.clicks == [Click(30, 30, True)]
    assert trace.ious == [1.0]
    assert [trace.iou_after(k) for k in (1, 5, 10)] == [1.0, 1.0, 1.0]
    assert trace.noc(0.85) == 1 and trace.noc(0.90) == 1


def test_click_sequence_on_two_objects_with_a_disk_oracle():
    # GT: a 21x21 square centred (30, 30) and an 11x11 square centred (70, 30); the oracle paints disks of radius 10.
    shape = (64, 100)
    truth = rectangle(shape, (20, 40), (20, 40)) | rectangle(shape, (25, 35), (65, 75))
    oracle = DiskClickOracle(shape, radius=10)
    trace = simulate_clicks(oracle, truth, max_clicks=3)
    # 1: deepest GT pixel = centre of the big square (depth 11 vs 6).
    # 2: the disk covers the big square's middle; the deepest miss is the small square's centre (depth 6
    #    against about 2 in the big square's corners) -> positive.
    # 3: the second disk spills 5 px beyond each side of the small square; the spill is 3 deep in the
    #    middle of each cap, the top cap comes first in raster order -> negative at (70, 22).
    assert trace.clicks == [Click(30, 30, True), Click(70, 30, True), Click(70, 22, False)]
    assert [c["labels"].tolist() for c in oracle.calls] == [[1], [1, 1], [1, 1, 0]]
    assert oracle.calls[2]["points"].tolist() == [[30, 30], [70, 30], [70, 22]]
    assert trace.ious[1] > trace.ious[0]


def test_previous_logits_are_fed_back_only_when_asked():
    truth = rectangle((64, 100), (20, 40), (20, 40)) | rectangle((64, 100), (25, 35), (65, 75))
    fed = DiskClickOracle(truth.shape, radius=10)
    simulate_clicks(fed, truth, max_clicks=3, feed_logits=True)
    assert fed.calls[0]["mask_input"] is None
    for k in (1, 2):  # call k receives the logits of call k-1 (tagged with its number), as (1, 256, 256)
        assert fed.calls[k]["mask_input"].shape == (1, 256, 256)
        assert np.all(fed.calls[k]["mask_input"] == k - 1)
    unfed = DiskClickOracle(truth.shape, radius=10)
    simulate_clicks(unfed, truth, max_clicks=3, feed_logits=False)
    assert all(call["mask_input"] is None for call in unfed.calls)


def test_noc_counts_the_cap_when_the_target_is_never_reached():
    truth = disk((61, 61), (30, 30), 12)
    oracle = IgnoringOracle(truth.shape, radius=12)
    trace = simulate_clicks(oracle, truth, max_clicks=20, stop_iou=0.90, min_clicks=10)
    assert len(trace.clicks) == 20 and trace.ious == [0.0] * 20
    assert all(c.positive for c in trace.clicks)
    assert len({(c.x, c.y) for c in trace.clicks}) == 20  # a clicked pixel is never offered again
    assert trace.noc(0.85) == 20 and trace.noc(0.90) == 20


@settings(max_examples=60, deadline=None)
@given(
    truth_box=st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(1, 12), st.integers(1, 12)),
    prediction_box=st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 12), st.integers(0, 12)),
    rule=st.sampled_from(["distance", "area"]),
)
def test_every_click_lands_in_the_error_it_corrects(truth_box, prediction_box, rule):
    def box_mask(x, y, w, h):
        mask = np.zeros((32, 32), bool)
        mask[y : y + h, x : x + w] = True
        return mask

    truth, prediction = box_mask(*truth_box), box_mask(*prediction_box)
    click = next_click(prediction, truth, rule=rule)
    if np.array_equal(truth, prediction):
        assert click is None
        return
    wanted = (truth & ~prediction) if click.positive else (prediction & ~truth)
    assert wanted[click.y, click.x]
    x, y = interior_point(truth)
    assert truth[int(y), int(x)]


def test_number_of_clicks_by_hand():
    assert number_of_clicks([0.5, 0.86, 0.91], 0.85) == 2
    assert number_of_clicks([0.5, 0.86, 0.91], 0.90) == 3
    assert number_of_clicks([0.5] * 20, 0.85) == 20
    assert number_of_clicks([0.1, 0.1, 0.95], 0.90, cap=2) == 2
    assert number_of_clicks([0.85], 0.85) == 1


# --------------------------------------------------------------------------- baselines and the pipeline
def test_box_baselines():
    filled, ellipse = FilledBoxBaseline(), EllipseBaseline()
    image = np.zeros((50, 60), np.uint8)
    truth = rectangle(image.shape, (10, 29), (5, 44))  # 20 rows x 40 columns
    box = np.array([5, 10, 45, 30])
    for baseline in (filled, ellipse):
        baseline.set_image(image)
    assert np.array_equal(filled.segment(box=box).mask, truth)
    ellipse_mask = ellipse.segment(box=box).mask
    assert not ellipse_mask[~truth].any()
    assert iou(ellipse_mask, truth) == pytest.approx(np.pi / 4, abs=0.02)  # ellipse/rectangle area ratio
    with pytest.raises(EvaluationError):
        filled.segment(points=np.array([[10, 10]]), labels=np.array([1]))


def test_evaluate_baselines_on_synthetic_rectangles(tmp_path):
    coco = write_synthetic_coco(tmp_path, [[(5, 5, 40, 20)], [(10, 30, 30, 20), (50, 5, 25, 21)]])
    result = evaluate("filled-box", coco, prompt="box", progress=False)
    assert result.summary["n"] == 3
    assert result.summary["mAP"] == pytest.approx(1.0) and result.summary["mean Dice"] == pytest.approx(1.0)
    assert [(r.image_id, r.annotation_id) for r in result.records] == [(1, 1), (2, 2), (2, 3)]
    # Inscribed ellipse: IoU ≈ π/4 ≈ 0.785 on every rectangle -> a hit at 0.50..0.75 (6 of 10 thresholds).
    ellipse = evaluate("ellipse", coco, prompt="box", progress=False)
    assert all(0.78 < r.iou < 0.795 for r in ellipse.records)  # away from the 0.80 threshold
    assert ellipse.summary["mAP"] == pytest.approx(0.6)
    assert ellipse.summary["mAP@50"] == pytest.approx(1.0)
    with pytest.raises(EvaluationError, match="cannot take point"):
        evaluate("filled-box", coco, prompt="point", progress=False)
    limited = evaluate("filled-box", coco, prompt="box", progress=False, limit=1)
    assert limited.summary["n"] == 1


def test_missing_image_fails_before_any_model_runs(tmp_path):
    coco = write_synthetic_coco(tmp_path, [[(5, 5, 10, 10)]])
    (tmp_path / "images" / "im1.png").unlink()
    with pytest.raises(EvaluationError, match="im1.png"):
        EvalDataset.load(coco)


def test_evaluate_dataset_with_clicks_on_an_oracle_segmenter(tmp_path):
    coco = write_synthetic_coco(tmp_path, [[(5, 5, 21, 21)]])

    class PerfectSquareSegmenter:
        """Test double: answers every prompt with the GT square itself (predicted IoU 0.9)."""

        name, refine, prompt_kinds = "oracle", None, frozenset({"box", "point"})

        def set_image(self, image, key=None):
            self.shape = image.shape[:2]

        def segment(self, points=None, labels=None, box=None, mask_input=None):
            return Segmentation(mask=rectangle(self.shape, (5, 25), (5, 25)), score=0.9, logits=np.zeros((256, 256)))

    dataset = EvalDataset.load(coco)
    results = evaluate_dataset(
        PerfectSquareSegmenter(), dataset, ["box", "point", "inside"], clicks=3, noc=True, progress=False
    )
    assert [r.prompt for r in results] == ["box", "point", "inside"]
    for result in results:
        assert result.summary["mAP"] == pytest.approx(1.0)
        assert result.summary["NoC@85"] == 1 and result.summary["NoC@90"] == 1
        assert [result.summary[f"IoU@{k}"] for k in (1, 2, 3)] == [1.0, 1.0, 1.0]


# --------------------------------------------------------------------------- CLI and reports
def test_cli_writes_reports_and_refuses_to_overwrite(tmp_path, capsys):
    from ultrasam.cli import main

    coco = write_synthetic_coco(tmp_path / "data", [[(5, 5, 40, 20)], [(10, 30, 30, 20)]])
    out = tmp_path / "results"
    argv = [
        "evaluate",
        "--model",
        "filled-box",
        "--model",
        "ellipse",
        "--coco",
        str(coco),
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    for name in (
        "summary.md",
        "summary.csv",
        "summary.json",
        "tables/synthetic.md",
        "tables/synthetic.csv",
        "plots/synthetic__dice_hist.png",
        "instances/synthetic/filled-box__box__none.csv",
        "detections/synthetic/ellipse__box__none.json",
    ):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [(r["dataset"], r["model"], r["prompt"]) for r in rows] == [
        ("synthetic", "filled-box", "box"),
        ("synthetic", "ellipse", "box"),
    ]
    assert float(rows[0]["mAP"]) == pytest.approx(1.0) and float(rows[1]["mAP"]) == pytest.approx(0.6)
    assert "| synthetic | box | ellipse |" in (out / "summary.md").read_text()
    before = (out / "summary.csv").read_bytes()
    assert main(argv) == 1  # refuses: results exist
    assert "already exists" in capsys.readouterr().err
    assert (out / "summary.csv").read_bytes() == before
    assert main(argv + ["--overwrite"]) == 0
    assert (
        main(
            ["evaluate", "--model", "ellipse", "--coco", str(coco), "--prompt", "point", "--out", str(tmp_path / "r2")]
        )
        == 1
    )
    assert main(["evaluate", "--model", "no-such-model", "--coco", str(coco), "--out", str(tmp_path / "r3")]) == 1


# --------------------------------------------------------------------------- real model, real ultrasound
@pytest.mark.slow
@pytest.mark.shared
def test_litemedsam_on_the_mmotu_sample(litemedsam_checkpoint, data_dir):
    """LiteMedSAM with exact GT boxes on the 10 MMOTU sample tumours, against independently measured
    values (TARGETS.md: mean Dice 0.820, COCO segm mAP 0.533); its point prompt gives empty masks."""
    from ultrasam_training.evaluation.segmenters import load_segmenter

    sample = data_dir / "mmotu_sample"
    dataset = EvalDataset.load(sample / "sample_coco_MMOTU2D.json", image_root=sample / "sample_images")
    started = time.perf_counter()
    box, point = evaluate_dataset(load_segmenter(litemedsam_checkpoint), dataset, ["box", "point"], progress=False)
    print(f"\nLiteMedSAM MMOTU sample: {box.line()}\n{point.line()}\n{time.perf_counter() - started:.1f} s")
    assert box.summary["n"] == 10
    assert box.summary["mean Dice"] == pytest.approx(0.820, abs=0.02)
    assert box.summary["mAP"] == pytest.approx(0.533, abs=0.03)
    assert point.summary["mean Dice"] < 0.05
