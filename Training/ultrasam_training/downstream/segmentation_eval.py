"""COCO mask AP of Mask2Former predictions: per class and class-agnostic, with bootstrap intervals.

* per class: pycocotools ``COCOeval(iouType="segm")`` with the lesion classes as categories
  (benign, malignant), the standard per-class AP averaged over classes (``mAP``) and each class's AP;
* class-agnostic: one detection per query (its best class's score), every category merged
  (``useCats=0``), as the paper's agnostic metric.

Intervals: percentile bootstrap over test **images** (an image's lesions and detections move
together), seeded; pycocotools is rerun per resample, so the default is fewer resamples (200).
Per-lesion ``lesion_iou`` (the best mask IoU of any detection scoring ≥ 0.5, 0 if none) is written
per lesion for the paired comparison of two runs.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from ultrasam_training.downstream.metrics import Estimate
from ultrasam_training.downstream.report import NOTICE

SCORE_THRESHOLD = 0.5


def _coco_ap(
    gt: dict, detections: list[dict], use_cats: bool, cat_ids: Sequence[int] | None = None
) -> tuple[float, float]:
    """(AP, AP@50) of ``detections`` against ``gt``; no detection scores 0."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not detections:
        return 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = gt
        truth.createIndex()
        results = truth.loadRes([dict(d) for d in detections])
        evaluation = COCOeval(truth, results, iouType="segm")
        evaluation.params.useCats = int(use_cats)
        evaluation.params.imgIds = [image["id"] for image in gt["images"]]
        if cat_ids is not None:
            evaluation.params.catIds = list(cat_ids)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return max(0.0, float(evaluation.stats[0])), max(0.0, float(evaluation.stats[1]))


def _subset(gt: dict, detections: list[dict], image_indices: np.ndarray) -> tuple[dict, list[dict]]:
    """A bootstrap resample: images drawn with replacement get fresh ids so duplicates count twice."""
    images, annotations, kept = [], [], []
    by_image_ann: dict[int, list[dict]] = {}
    for a in gt["annotations"]:
        by_image_ann.setdefault(a["image_id"], []).append(a)
    by_image_det: dict[int, list[dict]] = {}
    for d in detections:
        by_image_det.setdefault(d["image_id"], []).append(d)
    ann_id = 1
    for new_id, index in enumerate(image_indices, start=1):
        image = gt["images"][index]
        images.append({**image, "id": new_id})
        for a in by_image_ann.get(image["id"], []):
            annotations.append({**a, "id": ann_id, "image_id": new_id})
            ann_id += 1
        kept += [{**d, "image_id": new_id} for d in by_image_det.get(image["id"], [])]
    return {"images": images, "annotations": annotations, "categories": gt["categories"]}, kept


def ap_estimates(
    gt: dict, per_class: list[dict], agnostic: list[dict], classes: Sequence[str], resamples: int, seed: int
) -> dict[str, Estimate]:
    """Per-class mAP, each class's AP and the class-agnostic AP / AP@50, each with a bootstrap interval."""
    agnostic_gt = {
        **gt,
        "categories": [{"id": 1, "name": "lesion"}],
        "annotations": [{**a, "category_id": 1} for a in gt["annotations"]],
    }

    def figures(g: dict, pc: list[dict], ag: list[dict], ag_g: dict) -> dict[str, float]:
        out = {}
        if len(classes) > 1:
            present = sorted({a["category_id"] for a in g["annotations"]})
            out["mAP"] = _coco_ap(g, pc, True, present)[0]
            for c, name in enumerate(classes):
                out[f"AP_{name}"] = _coco_ap(g, pc, True, [c + 1])[0] if (c + 1) in present else float("nan")
        out["agnostic_AP"], out["agnostic_AP50"] = _coco_ap(ag_g, ag, False)
        return out

    point = figures(gt, per_class, agnostic, agnostic_gt)
    rng = np.random.default_rng(seed)
    n = len(gt["images"])
    draws: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(resamples):
        indices = rng.integers(0, n, n)
        g, pc = _subset(gt, per_class, indices)
        ag_g, ag = _subset(agnostic_gt, agnostic, indices)
        for k, v in figures(g, pc, ag, ag_g).items():
            draws[k].append(v)
    estimates = {}
    for k, value in point.items():
        values = np.array([v for v in draws[k] if not np.isnan(v)])
        low, high = np.percentile(values, [2.5, 97.5]) if values.size else (float("nan"), float("nan"))
        estimates[k] = Estimate(float(value), float(low), float(high), n)
    return estimates


def evaluate_sets(
    model,
    datasets: Mapping[str, object],
    out_dir: Path,
    batch_size: int,
    resamples: int,
    seed: int,
    cost: dict,
    meta: dict,
    title: str,
) -> dict:
    """Predict every set, score it, write ``summary.md|json`` and ``predictions/<set>.csv``."""
    from ultrasam_training.downstream.segmentation import instances_from_queries, lesion_collate
    from ultrasam_training.evaluation.metrics import encode_rle, iou

    out_dir = Path(out_dir)
    (out_dir / "predictions").mkdir(parents=True, exist_ok=True)
    summary = {
        "title": title,
        "sets": {},
        "cost": cost,
        "meta": meta,
        "notice": NOTICE,
        "bootstrap": {"resamples": resamples, "seed": seed, "unit": "image"},
    }
    model.eval()
    for name, dataset in datasets.items():
        classes = dataset.classes
        gt = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)]}
        per_class, agnostic, lesion_rows = [], [], []
        with torch.no_grad():
            for start in range(0, len(dataset), batch_size):
                batch = lesion_collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
                outputs = model.test_step(batch)
                for output, index, valid in zip(outputs, batch["index"], batch["valid"]):
                    image = dataset.images[index]
                    image_id = len(gt["images"]) + 1
                    gt["images"].append(
                        {"id": image_id, "height": image.height, "width": image.width, "file_name": image.key}
                    )
                    masks = image.masks()
                    for lesion in image.lesions:
                        a = lesion.annotation
                        gt["annotations"].append(
                            {
                                "id": len(gt["annotations"]) + 1,
                                "image_id": image_id,
                                "category_id": (0 if dataset.class_agnostic else lesion.label) + 1,
                                "segmentation": a["segmentation"],
                                "area": a["area"],
                                "bbox": a["bbox"],
                                "iscrowd": 0,
                            }
                        )
                    instances = instances_from_queries(
                        output["class_logits"],
                        output["mask_logits"],
                        valid.tolist(),
                        dataset.spec.image_size,
                        (image.height, image.width),
                    )
                    best_query: dict[int, dict] = {}
                    for inst in instances:
                        rle = encode_rle(inst["mask"])
                        per_class.append(
                            {
                                "image_id": image_id,
                                "category_id": inst["label"] + 1,
                                "segmentation": rle,
                                "score": inst["score"],
                            }
                        )
                        if inst["query"] not in best_query or inst["score"] > best_query[inst["query"]]["score"]:
                            best_query[inst["query"]] = {**inst, "rle": rle}
                    for inst in best_query.values():
                        agnostic.append(
                            {
                                "image_id": image_id,
                                "category_id": 1,
                                "segmentation": inst["rle"],
                                "score": inst["agnostic_score"],
                            }
                        )
                    confident = [inst["mask"] for inst in instances if inst["score"] >= SCORE_THRESHOLD]
                    for lesion, mask in zip(image.lesions, masks):
                        best = max((iou(m, mask) for m in confident), default=0.0)
                        lesion_rows.append((f"{image.key}|{lesion.annotation_id}", best))
        estimates = ap_estimates(gt, per_class, agnostic, classes, resamples, seed)
        summary["sets"][name] = {k: vars(v) for k, v in estimates.items()}
        summary["sets"][name]["lesions"] = len(gt["annotations"])
        with open(out_dir / "predictions" / f"{name}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["key", "lesion_iou"])
            writer.writerows([(k, f"{v:.6f}") for k, v in lesion_rows])
    _write(out_dir, summary)
    return summary


def _write(out_dir: Path, summary: dict) -> None:
    columns = sorted(
        {k for s in summary["sets"].values() for k in s if k != "lesions"},
        key=lambda k: (not k.startswith("agnostic"), k),
    )
    lines = [
        f"# {summary['title']}",
        "",
        f"_{NOTICE}_",
        "",
        "| set | images | lesions | " + " | ".join(columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for name, figures in summary["sets"].items():
        cells = [Estimate(**figures[c]).text() if c in figures else "" for c in columns]
        n = next(v["n"] for k, v in figures.items() if k != "lesions")
        lines.append(f"| {name} | {n} | {figures['lesions']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"COCO mask AP (pycocotools segm, IoU 0.50:0.95); 95 % intervals: bootstrap over images, "
        f"{summary['bootstrap']['resamples']} resamples, seed {summary['bootstrap']['seed']}.",
    ]
    lines += ["", "| cost | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in summary["cost"].items()]
    lines += ["", "| run | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in summary["meta"].items()]
    (out_dir / "summary.md").write_text("\n".join(lines) + "\n")
    with open(out_dir / "summary.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["set", "metric", "value", "low", "high", "n"])
        for name, figures in summary["sets"].items():
            for metric, e in figures.items():
                if metric != "lesions":
                    writer.writerow([name, metric, e["value"], e["low"], e["high"], e["n"]])
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
