"""Evaluate a model the way users will run it: through ``ultrasam.predictor.Predictor``.

For every GT instance of a class-agnostic COCO file one deterministic prompt is derived
(``point`` = mask centroid as the original's test configs, ``inside`` = distance-transform
maximum, ``box`` = exact GT box), the predictor answers at original resolution, and we report
mean Dice and COCO segm mAP / mAP@50 (``ultrasam_training.evaluation.metrics``: pycocotools, one
prediction per GT instance scored by the predicted IoU, as the original's ``CocoMetric``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from ultrasam.models import SamModel
from ultrasam.predictor import Predictor
from ultrasam_training.evaluation.metrics import coco_segm_map, dice, encode_rle
from ultrasam_training.train.prompts import evaluation_prompt

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """Scores of one (annotation file, prompt kind, refinement) combination."""

    name: str
    model: str
    prompt: str
    refine: bool
    instances: int
    dice: float
    map: float
    map50: float

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        mode = "refine" if self.refine else "single"
        return (f"{self.model:<16} {self.name:<10} {self.prompt:<6} {mode:<6} n={self.instances:<4d} "
                f"Dice {self.dice:.3f}  mAP {self.map:.3f}  mAP50 {self.map50:.3f}")


def evaluate_coco(
    model: SamModel,
    ann_file: str | Path,
    prompts: Sequence[str] = ("point", "box"),
    refine: Iterable[bool] = (True,),
    name: str | None = None,
    max_images: int | None = None,
    progress: bool = True,
) -> list[EvalResult]:
    """Dice and mAP of ``model`` on ``ann_file`` for every prompt kind × refinement setting."""
    return evaluate_models({"model": model}, ann_file, prompts, refine, name, max_images, progress)


def evaluate_models(
    models: Mapping[str, SamModel],
    ann_file: str | Path,
    prompts: Sequence[str] = ("point", "box"),
    refine: Iterable[bool] = (True,),
    name: str | None = None,
    max_images: int | None = None,
    progress: bool = True,
) -> list[EvalResult]:
    """:func:`evaluate_coco` for several models at once; models sharing an image encoder share its embeddings.

    A fine-tune with a frozen encoder and its base model then cost one encoder pass per image.
    Refinement is skipped for a model without a mask-prompt encoder.
    """
    from ultrasam_training.data.coco import decode_annotation_mask, load_coco, resolve_image_path
    from ultrasam_training.train.dataset import read_rgb
    from ultrasam_training.train.model import encoder_digest

    coco = load_coco(ann_file)
    name = name or Path(ann_file).stem
    refine = list(refine)
    by_image: dict[int, list[dict]] = {}
    for annotation in coco["annotations"]:
        if not annotation.get("iscrowd", 0):
            by_image.setdefault(annotation["image_id"], []).append(annotation)
    images = [im for im in coco["images"] if by_image.get(im["id"])][:max_images]
    keep = {im["id"] for im in images}
    gt = {**coco, "images": images, "annotations": [a for a in coco["annotations"] if a["image_id"] in keep]}
    combos = [(m, p, r) for m, model in models.items() for p in prompts for r in refine
              if not r or model.spec.mask_prompt]
    dices: dict[tuple, list[float]] = {c: [] for c in combos}
    detections: dict[tuple, list[dict]] = {c: [] for c in combos}
    predictors = {m: Predictor(model, cache_size=1) for m, model in models.items()}
    digests = {m: (encoder_digest(model.sam.image_encoder), model.spec) for m, model in models.items()}
    for image in tqdm(images, desc=f"evaluating {name}", unit="img", disable=not progress):
        rgb = read_rgb(resolve_image_path(ann_file, image["file_name"]))
        encoded: dict[tuple, Predictor] = {}
        for m, predictor in predictors.items():
            source = encoded.get(digests[m])
            if source is None:
                predictor.set_image(rgb, key=image["id"])
                encoded[digests[m]] = predictor
            else:
                predictor.set_embedding(source.embedding, rgb.shape[:2])
        annotations = by_image[image["id"]]
        masks = [decode_annotation_mask(a, image["height"], image["width"]) for a in annotations]
        for m, kind, refined in combos:
            values = np.stack([evaluation_prompt(mask, kind) for mask in masks])
            if kind == "box":
                prediction = predictors[m].predict(box=values, refine=refined)
            else:
                prediction = predictors[m].predict(points=values[:, None, :], labels=np.ones((len(values), 1)),
                                                   refine=refined)
            for annotation, truth, predicted, score in zip(
                annotations, masks, prediction.masks[:, 0], prediction.scores[:, 0]
            ):
                dices[(m, kind, refined)].append(dice(predicted, truth))
                detections[(m, kind, refined)].append(
                    {"image_id": image["id"], "category_id": annotation["category_id"],
                     "segmentation": encode_rle(predicted), "score": float(score)}
                )
    results = []
    for combo in combos:
        m, kind, refined = combo
        scores = coco_segm_map(gt, detections[combo])
        values = dices[combo]
        results.append(EvalResult(name, m, kind, refined, len(values), float(np.mean(values)) if values else 0.0,
                                  scores["mAP"], scores["mAP@50"]))
    return results
