"""Run a segmenter over a COCO file: one prompt per GT instance, per-instance records, summaries.

Each image is read and encoded once; every instance of it is then prompted with each requested
prompt kind (and, with ``clicks``, run through the click simulator), so evaluating box and point
prompts together costs one encoder pass per image, not two.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from ultrasam_training.evaluation.clicks import NOC_CAP, ClickRule, simulate_clicks
from ultrasam_training.evaluation.dataset import EvalDataset
from ultrasam_training.evaluation.errors import EvaluationError
from ultrasam_training.evaluation.metrics import coco_segm_map, dice, encode_rle, iou
from ultrasam_training.evaluation.prompts import PROMPT_KINDS, prompt_arguments
from ultrasam_training.evaluation.segmenters import Segmenter, load_segmenter

log = logging.getLogger(__name__)


@dataclass
class InstanceRecord:
    """Scores of one GT instance under one prompt (click columns empty without ``clicks``)."""

    image_id: int
    annotation_id: int
    file_name: str
    area: int
    score: float
    dice: float
    iou: float
    click_ious: list[float] = field(default_factory=list)
    noc85: int | None = None
    noc90: int | None = None

    def to_row(self) -> dict[str, Any]:
        row = {k: v for k, v in asdict(self).items() if k != "click_ious"}
        row.update({f"IoU@{k}": value for k, value in enumerate(self.click_ious, start=1)})
        return row


@dataclass
class EvaluationResult:
    """Everything one (dataset, model, prompt) evaluation produced."""

    dataset: str
    model: str
    prompt: str
    refine: bool | None
    records: list[InstanceRecord]
    detections: list[dict]
    summary: dict[str, Any]

    def line(self) -> str:
        """One human-readable line for logs."""
        s = self.summary
        text = (
            f"{self.dataset} {self.model} {self.prompt} ({refine_label(self.refine)}): n={s['n']} "
            f"mAP {s['mAP']:.3f} mAP@50 {s['mAP@50']:.3f} Dice {s['mean Dice']:.3f} IoU {s['mean IoU']:.3f}"
        )
        if s.get("NoC@85") is not None:
            text += f" NoC@85 {s['NoC@85']:.2f} NoC@90 {s['NoC@90']:.2f}"
        return text


def refine_label(refine: bool | None) -> str:
    return "-" if refine is None else ("refine" if refine else "single")


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def summarize(
    dataset: EvalDataset,
    model: str,
    prompt: str,
    refine: bool | None,
    records: list[InstanceRecord],
    detections: list[dict],
    clicks: int,
) -> dict[str, Any]:
    """The table row of one evaluation: COCO mAP over the whole set plus per-instance means."""
    summary: dict[str, Any] = {
        "dataset": dataset.name,
        "prompt": prompt,
        "model": model,
        "refine": refine_label(refine),
        "n": len(records),
    }
    summary.update(coco_segm_map(dataset.coco, detections))
    summary["mean Dice"] = _mean([r.dice for r in records])
    summary["mean IoU"] = _mean([r.iou for r in records])
    if clicks:
        summary["NoC@85"] = _mean([r.noc85 for r in records])
        summary["NoC@90"] = _mean([r.noc90 for r in records])
        for k in range(1, clicks + 1):
            summary[f"IoU@{k}"] = _mean([r.click_ious[k - 1] for r in records])
    else:
        summary["NoC@85"] = summary["NoC@90"] = None
    return summary


def evaluate_dataset(
    segmenter: Segmenter,
    dataset: EvalDataset,
    prompts: Sequence[str] = ("box",),
    *,
    clicks: int = 0,
    noc_cap: int = NOC_CAP,
    feed_logits: bool = True,
    click_rule: ClickRule = "distance",
    progress: bool = True,
) -> list[EvaluationResult]:
    """Evaluate ``segmenter`` on ``dataset`` with every prompt kind in ``prompts``; one result each.

    With ``clicks`` = N, each instance also goes through the click simulator (up to
    max(N, ``noc_cap``) clicks): IoU after 1..N clicks and NoC@85/90 (``noc_cap`` when never
    reached). The simulator does not depend on the prompt kind, so its columns are the same in
    every result of one call.
    """
    prompts = list(dict.fromkeys(prompts))
    for prompt in prompts:
        if prompt not in PROMPT_KINDS:
            raise EvaluationError(f"unknown prompt kind {prompt!r}; choose from {', '.join(PROMPT_KINDS)}")
        kind = "box" if prompt == "box" else "point"
        if kind not in segmenter.prompt_kinds:
            raise EvaluationError(
                f"{segmenter.name} cannot take {prompt} prompts (only {', '.join(sorted(segmenter.prompt_kinds))})"
            )
    if clicks < 0 or noc_cap < 1:
        raise EvaluationError("clicks must be ≥ 0 and the NoC cap ≥ 1")
    if clicks and "point" not in segmenter.prompt_kinds:
        raise EvaluationError(f"{segmenter.name} takes no clicks, so it cannot be evaluated interactively")
    records: dict[str, list[InstanceRecord]] = {p: [] for p in prompts}
    detections: dict[str, list[dict]] = {p: [] for p in prompts}
    started = time.perf_counter()
    bar = tqdm(total=dataset.instance_count, desc=f"{dataset.name} {segmenter.name}", unit="inst", disable=not progress)
    with bar:
        for image in dataset.images:
            segmenter.set_image(dataset.read_image(image), key=("evaluation", str(image.path)))
            for annotation in image.annotations:
                truth = dataset.truth_mask(image, annotation)
                click_columns: dict[str, Any] = {}
                if clicks:
                    trace = simulate_clicks(
                        lambda p, labels, m: segmenter.segment(points=p, labels=labels, mask_input=m),
                        truth,
                        max(clicks, noc_cap),
                        stop_iou=0.90,
                        min_clicks=clicks,
                        feed_logits=feed_logits,
                        rule=click_rule,
                    )
                    click_columns = {
                        "click_ious": [trace.iou_after(k) for k in range(1, clicks + 1)],
                        "noc85": trace.noc(0.85, noc_cap),
                        "noc90": trace.noc(0.90, noc_cap),
                    }
                for prompt in prompts:
                    result = segmenter.segment(**prompt_arguments(prompt, annotation, truth))
                    mask = np.asarray(result.mask, bool)
                    records[prompt].append(
                        InstanceRecord(
                            image_id=image.id,
                            annotation_id=annotation["id"],
                            file_name=image.entry["file_name"],
                            area=int(truth.sum()),
                            score=float(result.score),
                            dice=dice(mask, truth),
                            iou=iou(mask, truth),
                            **click_columns,
                        )
                    )
                    detections[prompt].append(
                        {
                            "image_id": image.id,
                            "category_id": annotation["category_id"],
                            "segmentation": encode_rle(mask),
                            "score": float(result.score),
                            "gt_annotation_id": annotation["id"],
                        }
                    )
                bar.update(1)
    seconds = time.perf_counter() - started
    results = []
    for prompt in prompts:
        summary = summarize(
            dataset, segmenter.name, prompt, segmenter.refine, records[prompt], detections[prompt], clicks
        )
        summary["seconds"] = seconds
        results.append(
            EvaluationResult(
                dataset=dataset.name,
                model=segmenter.name,
                prompt=prompt,
                refine=segmenter.refine,
                records=records[prompt],
                detections=detections[prompt],
                summary=summary,
            )
        )
        log.info("%s", results[-1].line())
    return results


def evaluate(
    model_or_checkpoint: Any,
    coco_path: str | Path,
    prompt: str = "box",
    refine: bool | None = None,
    clicks: int = 0,
    progress: bool = True,
    *,
    limit: int | None = None,
    image_root: str | Path | None = None,
    family: str | None = None,
    device: str = "cpu",
    noc_cap: int = NOC_CAP,
    feed_logits: bool = True,
    click_rule: ClickRule = "distance",
) -> EvaluationResult:
    """Evaluate any model (object, weights name, checkpoint path, or ``filled-box``/``ellipse``) on a COCO file.

    ``prompt``: ``box`` (exact GT box), ``point`` (GT centroid, the paper's test point) or
    ``inside`` (distance-transform maximum); ``refine`` None = the model family's default.
    """
    segmenter = load_segmenter(model_or_checkpoint, family=family, refine=refine, device=device)
    dataset = EvalDataset.load(coco_path, image_root=image_root, limit=limit)
    return evaluate_dataset(
        segmenter,
        dataset,
        [prompt],
        clicks=clicks,
        noc_cap=noc_cap,
        feed_logits=feed_logits,
        click_rule=click_rule,
        progress=progress,
    )[0]
