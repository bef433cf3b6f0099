"""One downstream run: train with the project's mmengine Runner, select on val, test once, report.

``run_downstream(task, config)``:

1. builds the Runner with :func:`ultrasam_training.train.runner.build_runner` (plain-data
   checkpoints, safe resume, device policy: bf16 autocast on CUDA, fp32 on the CPU);
2. trains; the config's ``CheckpointHook(save_best=...)`` keeps the checkpoint with the best
   validation score (macro-F1 for classification, mask AP for segmentation);
3. loads that checkpoint and evaluates the config's ``evaluation.sets`` once (val for reference,
   test as the reported figure), writing ``<work_dir>/results/`` (:mod:`.report`);
4. records cost: trainable parameters, seconds per iteration and per epoch.

A baseline whose weights are not on the machine (ImageNet ResNet-50) is skipped with a message and a
``results/skipped.md``, not failed.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from ultrasam_training.train.errors import TrainingError

log = logging.getLogger(__name__)

TASKS = ("classify", "segment", "prompted")


def _model(runner):
    from mmengine.model import is_model_wrapper

    return runner.model.module if is_model_wrapper(runner.model) else runner.model


def _hook(runner, name: str):
    return next((h for h in runner.hooks if type(h).__name__ == name), None)


def best_checkpoint(runner) -> Path | None:
    """The checkpoint the ``save_best`` rule kept, if validation ran."""
    hook = _hook(runner, "CheckpointHook")
    path = getattr(hook, "best_ckpt_path", None) if hook is not None else None
    return Path(path) if path and Path(path).is_file() else None


def build_dataset(cfg: dict):
    from mmengine.registry import DATASETS

    return DATASETS.build(cfg)


def predict(model, dataset, batch_size: int, collate: str = "default_collate") -> tuple[list, list]:
    """``model.test_step`` over ``dataset`` in order: (outputs, batches' per-item fields)."""
    from mmengine.registry import FUNCTIONS
    from torch.utils.data import DataLoader

    collate_fn = FUNCTIONS.get(collate)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=collate_fn)
    outputs, items = [], []
    model.eval()
    with torch.no_grad():
        for batch in loader:
            outputs += model.test_step(batch)
            items += [{"key": k} for k in batch["keys"]]
    return outputs, items


def _cost(runner, train_size: int) -> dict:
    hook = _hook(runner, "CostRecordHook")
    stats = dict(hook.stats) if hook is not None else {}
    batch = runner.cfg.train_dataloader.batch_size
    seconds = stats.get("seconds_per_iteration", float("nan"))
    stats["iterations"] = int(runner.iter)
    stats["batch_size"] = int(batch)
    stats["train_items"] = int(train_size)
    stats["seconds_per_epoch"] = seconds * math.ceil(train_size / batch) if not math.isnan(seconds) else float("nan")
    stats["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    stats["torch_threads"] = torch.get_num_threads()
    return stats


def _skip(work_dir: Path, message: str) -> Path:
    out = work_dir / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "skipped.md").write_text(f"# skipped\n\n{message}\n")
    print(f"skipped: {message}")
    return work_dir


def run_downstream(
    task: str,
    config: str | Path,
    work_dir: str | Path | None = None,
    cfg_options: dict | None = None,
    resume: bool = False,
    evaluate_only: str | None = None,
) -> Path:
    """Train, select, test and report one downstream config; returns the work dir."""
    from ultrasam_training.downstream.backbones import MissingWeights
    from ultrasam_training.train.runner import build_runner, find_config, load_config

    if task not in TASKS:
        raise TrainingError(f"task must be one of {TASKS}, not {task!r}")
    config_path = find_config(config)
    cfg = load_config(config_path, cfg_options)
    declared = cfg.get("downstream_task")
    if declared != task:
        raise TrainingError(f"{config_path.name} is a {declared or 'non-downstream'} config, not a {task} config")
    work_dir = Path(work_dir or cfg.get("work_dir") or Path("work_dirs") / config_path.stem)
    try:
        runner = build_runner(config_path, work_dir, cfg_options, resume=resume)
    except MissingWeights as exc:
        return _skip(work_dir, str(exc).split("\n")[-1])
    started = time.perf_counter()
    if evaluate_only:
        runner.load_checkpoint(evaluate_only)
    else:
        runner.train()
        best = best_checkpoint(runner)
        if best is not None:
            runner.load_checkpoint(str(best))
            runner.logger.info(f"evaluating the checkpoint selected on val: {best}")
    wall = time.perf_counter() - started
    train_size = len(runner.train_dataloader.dataset)
    cost = {**_cost(runner, train_size), "train_wall_seconds": round(wall, 1)}
    meta = {
        "config": config_path.name,
        "selected": str(best_checkpoint(runner) or "last iteration"),
        "seed": runner.seed,
        "torch": torch.__version__,
    }
    (work_dir / "results").mkdir(parents=True, exist_ok=True)
    if _evaluation_sets(cfg):
        EVALUATORS[task](runner, cfg, work_dir / "results", cost, meta)
    else:  # e.g. a timing run: --cfg-options train_cfg.max_iters=3 evaluation.sets.val=None evaluation.sets.test=None
        print(f"no evaluation sets: cost only ({json.dumps(cost, default=str)})")
    (work_dir / "results" / "run.json").write_text(
        json.dumps({"task": task, "cost": cost, "meta": meta}, indent=1, default=str) + "\n"
    )
    print(f"results: {work_dir / 'results' / 'summary.md'}")
    return work_dir


def _evaluation_sets(cfg) -> dict:
    """The config's evaluation sets; a set given as None is skipped (a sweep looks at val only)."""
    evaluation = cfg.get("evaluation") or {}
    return {name: c for name, c in dict(evaluation.get("sets") or {}).items() if c is not None}


def _evaluation_options(cfg) -> tuple[dict, int, int, int]:
    evaluation = cfg.get("evaluation") or {}
    sets = _evaluation_sets(cfg)
    if not sets:
        raise TrainingError("the config has no evaluation.sets")
    return (
        sets,
        int(evaluation.get("batch_size", 8)),
        int(evaluation.get("bootstrap", 2000)),
        int(evaluation.get("seed", 0)),
    )


def evaluate_classification(runner, cfg, out_dir: Path, cost: dict, meta: dict, title: str | None = None) -> dict:
    from ultrasam_training.downstream.report import write_classification_report

    sets, batch_size, resamples, seed = _evaluation_options(cfg)
    model = _model(runner)
    results, classes = {}, None
    for name, dataset_cfg in sets.items():
        dataset = build_dataset(dataset_cfg)
        classes = dataset.classes
        outputs, items = predict(model, dataset, batch_size)
        probabilities = np.stack([o["probabilities"] for o in outputs])
        labels = np.array([o["label"] for o in outputs])
        results[name] = ([i["key"] for i in items], labels, probabilities)
    return write_classification_report(
        out_dir, results, classes, title or cfg.get("run_title", "classification"), cost, meta, resamples, seed
    )


def evaluate_prompted(runner, cfg, out_dir: Path, cost: dict, meta: dict) -> dict:
    from ultrasam_training.downstream.prompted import export_classifier

    train_set = runner.train_dataloader.dataset
    cost["empty_predicted_masks_train"] = train_set.empty_masks()  # prompts whose descriptor used soft pooling
    summary = evaluate_classification(runner, cfg, out_dir, cost, meta, cfg.get("run_title", "prompted classification"))
    val = {k: v["value"] for k, v in summary["sets"].get("val", {}).items()}
    path = export_classifier(
        _model(runner),
        train_set,
        Path(runner.work_dir) / "prompt_classifier.safetensors",
        {"config": meta["config"], "val": json.dumps(val), "model": cfg.model_source},
    )
    print(f"prompt classifier: {path}")
    return summary


def evaluate_segmentation(runner, cfg, out_dir: Path, cost: dict, meta: dict) -> dict:
    from ultrasam_training.downstream.segmentation_eval import evaluate_sets

    sets, batch_size, resamples, seed = _evaluation_options(cfg)
    return evaluate_sets(
        _model(runner),
        {n: build_dataset(c) for n, c in sets.items()},
        out_dir,
        batch_size,
        resamples,
        seed,
        cost,
        meta,
        cfg.get("run_title", "Mask2Former instance segmentation"),
    )


EVALUATORS = {"classify": evaluate_classification, "prompted": evaluate_prompted, "segment": evaluate_segmentation}
