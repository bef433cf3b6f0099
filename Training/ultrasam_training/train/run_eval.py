"""``ultrasam test``: evaluate a checkpoint on the evaluation sets a config names.

A config's ``evaluation`` entry (not mmengine's ``test_evaluator``: evaluation runs through the
deployed predictor, not the training model) looks like::

    evaluation = dict(sets=dict(busi='shared:test_busi', hc18='shared:test_hc18'),
                      prompts=['point', 'box'], refine=[True, False])
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ultrasam.models import SamModel, load_model, model_from_state_dict
from ultrasam_training.train.errors import TrainingError
from ultrasam_training.train.evaluate import EvalResult, evaluate_models


def load_any_model(checkpoint: str | Path, family: str | None, device: str = "cpu") -> SamModel:
    """``model_final.pth``, an mmengine training checkpoint, any library checkpoint, or a weights name."""
    from ultrasam.checkpoints import extract_state_dict, read_checkpoint

    from ultrasam_training.train.export import plain_state_dict
    from ultrasam_training.train.model import resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    container = read_checkpoint(path)
    if isinstance(container, dict) and "meta" in container and "state_dict" in container:
        meta = container.get("meta") if isinstance(container.get("meta"), dict) else {}
        family = family or meta.get("ultrasam_family")
        state = plain_state_dict(extract_state_dict(container, path))
        return model_from_state_dict(state, family=family, source=str(path)).to(device)
    return load_model(path, family=family, device=device)


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
    progress: bool = True,
) -> list[EvalResult]:
    """Evaluate one or several checkpoints on the config's evaluation sets; CLI-style string options.

    Checkpoints that share an image encoder (a frozen-encoder fine-tune and its base) share its
    embeddings, so comparing them costs one encoder pass per image.
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
    taken: set[str] = set()
    models = {_label(c, taken): load_any_model(c, family) for c in checkpoints}
    refine_flags = [r == "on" for r in refine] if refine else [bool(r) for r in evaluation.get("refine", [True])]
    kinds = list(prompts or evaluation.get("prompts", ["point", "box"]))
    results: list[EvalResult] = []
    for name in chosen:
        ann_file = resolve_annotation_file(available[name], evaluation.get("shared_data_root", "../shared/data"),
                                           evaluation.get("splits_root", "work_dirs/data"))
        results += evaluate_models(models, ann_file, kinds, refine=sorted(set(refine_flags)), name=name,
                                   max_images=max_images, progress=progress)
    return results
