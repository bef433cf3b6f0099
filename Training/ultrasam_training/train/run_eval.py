"""``ultrasam test``: evaluate checkpoints on the evaluation sets a config names.

A config's ``evaluation`` entry (not mmengine's ``test_evaluator``: evaluation runs through the
deployed predictor, not the training model) looks like::

    evaluation = dict(sets=dict(busi='shared:test_busi', hc18='shared:test_hc18'),
                      prompts=['point', 'box'], refine=[True, False])

The scoring is ``ultrasam evaluate``'s (:func:`ultrasam_training.evaluation.runner.evaluate_dataset`);
this module only turns a config into datasets and models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ultrasam.models import open_model
from ultrasam_training.evaluation.dataset import EvalDataset
from ultrasam_training.evaluation.runner import EvaluationResult, evaluate_dataset
from ultrasam_training.evaluation.segmenters import ModelSegmenter
from ultrasam_training.train.errors import TrainingError


def _label(checkpoint: str | Path, taken: set[str]) -> str:
    path = Path(str(checkpoint))
    label = path.stem if path.stem != "model_final" else f"{path.parent.name}/{path.stem}"
    while label in taken:
        label += "'"
    taken.add(label)
    return label


def run_evaluation(
    config: str | Path,
    checkpoints: str | Path | Sequence[str | Path],
    cfg_options: Sequence[str] | None = None,
    sets: Sequence[str] | None = None,
    prompts: Sequence[str] | None = None,
    refine: Sequence[str] | None = None,
    max_images: int | None = None,
    family: str | None = None,
    clicks: int = 0,
    progress: bool = True,
    noc: bool = False,
) -> list[EvaluationResult]:
    """Evaluate one or several checkpoints on the config's evaluation sets; CLI-style string options.

    ``refine`` holds ``"on"``/``"off"``; refinement is skipped for a model without a mask-prompt encoder.
    """
    from ultrasam_training.train.dataset import resolve_annotation_file
    from ultrasam_training.train.runner import load_config, parse_cfg_options

    cfg = load_config(config, parse_cfg_options(cfg_options))
    evaluation = cfg.get("evaluation")
    if not evaluation or not evaluation.get("sets"):
        raise TrainingError(f"config {config} has no evaluation sets (an 'evaluation = dict(sets=...)' entry)")
    available = dict(evaluation["sets"])
    chosen = list(sets or available)
    unknown = [name for name in chosen if name not in available]
    if unknown:
        raise TrainingError(f"unknown evaluation set(s) {unknown}; the config has {sorted(available)}")
    family = family or cfg.get("family")
    if isinstance(checkpoints, (str, Path)):
        checkpoints = [checkpoints]
    refine_flags = sorted(
        {r == "on" for r in refine} if refine else {bool(r) for r in evaluation.get("refine", [True])}
    )
    kinds = list(prompts or evaluation.get("prompts", ["point", "box"]))
    taken: set[str] = set()
    segmenters = []
    for checkpoint in checkpoints:
        model, label = open_model(checkpoint, family=family, device="cpu"), _label(checkpoint, taken)
        segmenters += [
            ModelSegmenter(model, name=label, refine=flag)
            for flag in refine_flags
            if not flag or model.spec.mask_prompt
        ]
    results: list[EvaluationResult] = []
    for name in chosen:
        ann_file = resolve_annotation_file(
            available[name],
            evaluation.get("shared_data_root", "../shared/data"),
            evaluation.get("splits_root", "work_dirs/data"),
        )
        dataset = EvalDataset.load(ann_file, name=name, limit=max_images)
        for segmenter in segmenters:
            results += evaluate_dataset(segmenter, dataset, kinds, clicks=clicks, noc=noc, progress=progress)
    return results
