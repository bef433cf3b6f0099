"""Run a segmenter over a COCO file: one prompt per GT instance, per-instance records, summaries.

Each image is read and encoded once; every instance of it is then prompted with each requested
prompt kind (and, with ``clicks``, run through the click simulator), so evaluating box and point
prompts together costs one encoder pass per image, not two.
"""

from __future__ import annotations

import json
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
    noc: bool = True,
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
    noc = noc and bool(records) and records[0].noc85 is not None
    summary["NoC@85"] = _mean([r.noc85 for r in records]) if noc else None
    summary["NoC@90"] = _mean([r.noc90 for r in records]) if noc else None
    for k in range(1, clicks + 1):
        summary[f"IoU@{k}"] = _mean([r.click_ious[k - 1] for r in records])
    return summary


def evaluate_dataset(
    segmenter: Segmenter,
    dataset: EvalDataset,
    prompts: Sequence[str] = ("box",),
    *,
    clicks: int = 0,
    noc: bool = False,
    noc_cap: int = NOC_CAP,
    feed_logits: bool = True,
    click_rule: ClickRule = "distance",
    progress: bool = True,
    journal: str | Path | None = None,
) -> list[EvaluationResult]:
    """Evaluate ``segmenter`` on ``dataset`` with every prompt kind in ``prompts``; one result each.

    With ``clicks`` = N, each instance also goes through the click simulator: exactly N clicks
    (fewer only once the mask is perfect), giving IoU after 1..N clicks. With ``noc`` the simulator
    goes on to ``noc_cap`` clicks until IoU ≥ 0.90, for NoC@85/90 (``noc_cap`` when never reached).
    The simulator does not depend on the prompt kind, so its columns are the same in every result.

    ``journal``: a JSON-lines file that receives each instance's records as soon as they exist; a
    journal left by an interrupted run with the same settings is resumed (its instances are not
    recomputed, images whose instances are all done are not even encoded).
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
    if (clicks or noc) and "point" not in segmenter.prompt_kinds:
        raise EvaluationError(f"{segmenter.name} takes no clicks, so it cannot be evaluated interactively")
    settings = {
        "dataset": dataset.name,
        "model": segmenter.name,
        "refine": segmenter.refine,
        "prompts": prompts,
        "clicks": clicks,
        "noc": noc,
        "noc_cap": noc_cap,
        "feed_logits": feed_logits,
        "click_rule": click_rule,
    }
    done = Journal.open(journal, settings) if journal is not None else None
    records: dict[str, list[InstanceRecord]] = {p: [] for p in prompts}
    detections: dict[str, list[dict]] = {p: [] for p in prompts}
    started = time.perf_counter()
    cpu_started = time.process_time()
    computed = 0
    bar = tqdm(total=dataset.instance_count, desc=f"{dataset.name} {segmenter.name}", unit="inst", disable=not progress)
    with bar:
        for image in dataset.images:
            if done is None or any((image.id, a["id"]) not in done.entries for a in image.annotations):
                segmenter.set_image(dataset.read_image(image), key=("evaluation", str(image.path)))
            for annotation in image.annotations:
                entry = done.entries.get((image.id, annotation["id"])) if done is not None else None
                if entry is None:
                    entry = _score_instance(
                        segmenter, dataset, image, annotation, prompts, clicks, noc, noc_cap, feed_logits, click_rule
                    )
                    computed += 1
                    if done is not None:
                        done.append(entry)
                for prompt in prompts:
                    records[prompt].append(InstanceRecord(**entry["records"][prompt]))
                    detections[prompt].append(entry["detections"][prompt])
                bar.update(1)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    results = []
    for prompt in prompts:
        summary = summarize(
            dataset, segmenter.name, prompt, segmenter.refine, records[prompt], detections[prompt], clicks, noc
        )
        summary["seconds"] = seconds
        summary["seconds per instance"] = seconds / computed if computed else None
        summary["CPU seconds per instance"] = cpu_seconds / computed if computed else None
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


def _score_instance(
    segmenter, dataset, image, annotation, prompts, clicks, noc, noc_cap, feed_logits, click_rule
) -> dict[str, Any]:
    """Every prompt's record and detection of one instance (plain JSON data, as journalled)."""
    truth = dataset.truth_mask(image, annotation)
    click_columns: dict[str, Any] = {}
    if clicks or noc:
        trace = simulate_clicks(
            lambda p, labels, m: segmenter.segment(points=p, labels=labels, mask_input=m),
            truth,
            max(clicks, noc_cap) if noc else clicks,
            stop_iou=0.90 if noc else None,
            min_clicks=clicks,
            feed_logits=feed_logits,
            rule=click_rule,
        )
        click_columns["click_ious"] = [trace.iou_after(k) for k in range(1, clicks + 1)]
        if noc:
            click_columns.update(noc85=trace.noc(0.85, noc_cap), noc90=trace.noc(0.90, noc_cap))
    entry: dict[str, Any] = {"image_id": image.id, "annotation_id": annotation["id"], "records": {}, "detections": {}}
    for prompt in prompts:
        result = segmenter.segment(**prompt_arguments(prompt, annotation, truth))
        mask = np.asarray(result.mask, bool)
        entry["records"][prompt] = asdict(
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
        rle = encode_rle(mask)
        entry["detections"][prompt] = {
            "image_id": image.id,
            "category_id": annotation["category_id"],
            "segmentation": rle,
            "score": float(result.score),
            "gt_annotation_id": annotation["id"],
        }
    return entry


class Journal:
    """Per-instance results of one (dataset, model, settings) run, appended as JSON lines.

    The first line holds the settings; a journal is resumed only by a run with identical settings,
    so a changed protocol can never be mixed into old numbers. A torn last line (a kill mid-write)
    is ignored and overwritten.
    """

    def __init__(self, path: Path, entries: dict[tuple, dict]) -> None:
        self.path = path
        self.entries = entries

    @classmethod
    def open(cls, path: str | Path, settings: dict[str, Any]) -> "Journal":
        path = Path(path)
        header = json.dumps({"settings": settings}, sort_keys=True)
        entries: dict[tuple, dict] = {}
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            if not lines or json.loads(lines[0]) != json.loads(header):
                raise EvaluationError(
                    f"{path} holds results of a run with other settings; remove it or choose another output folder"
                )
            good = [lines[0]]
            for line in lines[1:]:
                if not line.endswith("\n"):
                    break  # torn by a kill: recomputed
                entry = json.loads(line)
                entries[(entry["image_id"], entry["annotation_id"])] = entry
                good.append(line)
            path.write_text("".join(good), encoding="utf-8")
            log.info("resuming %s: %d instances already scored", path, len(entries))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(header + "\n", encoding="utf-8")
        return cls(path, entries)

    def append(self, entry: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
        self.entries[(entry["image_id"], entry["annotation_id"])] = entry


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
    noc: bool = False,
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
        noc=noc,
        noc_cap=noc_cap,
        feed_logits=feed_logits,
        click_rule=click_rule,
        progress=progress,
    )[0]
