"""mmengine hooks: exact resume of RNG state, deployable weights, curves, and predictor-based validation."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ultrasam_training.train.export import save_state_dict
from ultrasam_training.train.plot import plot_curves

FINAL_WEIGHTS = "model_final.safetensors"


def _model(runner):
    return runner.model.module if is_model_wrapper(runner.model) else runner.model


@HOOKS.register_module()
class RngStateHook(Hook):
    """Save Python, NumPy and torch (CPU and CUDA) generator states with every checkpoint; restore on resume.

    The data stream is keyed on (seed, position) and needs none of this; the model's own
    randomness (DropPath in TinyViT, any dropout) does.
    """

    priority = "VERY_LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            states["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["rng_states"] = states
        checkpoint.setdefault("meta", {})["ultrasam_family"] = _model(runner).spec.family

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if not states or not getattr(runner, "_resume", False):
            return
        random.setstate(states["python"])
        np.random.set_state(states["numpy"])
        torch.set_rng_state(states["torch"].cpu())
        if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])


@HOOKS.register_module()
class ExportWeightsHook(Hook):
    """Write ``<work_dir>/model_final.safetensors`` (plain SAM layout) every ``interval`` iterations and at the end.

    ``family`` names the recipe the file records when it differs from the training family (e.g. a
    LiteMedSAM fine-tune trained for clicks is ``ultrasam_lite``: same preprocessing, other abilities).
    """

    priority = "LOW"

    def __init__(self, interval: int = 2000, filename: str = FINAL_WEIGHTS, family: str | None = None) -> None:
        self.interval = interval
        self.filename = filename
        self.family = family

    def _export(self, runner, iterations_done: int) -> None:
        if not is_main_process():
            return
        model = _model(runner)
        path = Path(runner.work_dir) / self.filename
        config = Path(runner.cfg.filename).name if runner.cfg.filename else None
        save_state_dict(
            model.state_dict(),
            path,
            family=self.family or model.spec.family,
            overwrite=True,
            metadata={"iteration": iterations_done, "config": config, "seed": runner.seed},
        )
        runner.logger.info(f"wrote {path} (after {iterations_done} iterations)")

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.interval and self.every_n_train_iters(runner, self.interval) and not self.is_last_train_iter(runner):
            self._export(runner, runner.iter + 1)

    def after_train(self, runner) -> None:
        self._export(runner, runner.iter)


@HOOKS.register_module()
class CurvePlotHook(Hook):
    """At the end of training, plot the loss terms and learning rate to ``<work_dir>/training_curves.png``.

    Every run in the work directory is joined, so the plot after a resume covers the whole training.
    """

    priority = "VERY_LOW"

    def __init__(self, filename: str = "training_curves.png") -> None:
        self.filename = filename

    def after_train(self, runner) -> None:
        if not is_main_process():
            return
        work_dir = Path(runner.work_dir)
        try:
            path = plot_curves(work_dir, work_dir / self.filename)
        except ValueError as exc:
            runner.logger.warning(f"curve plot skipped: {exc}")
            return
        runner.logger.info(f"wrote {path}")


@HOOKS.register_module()
class PredictorValHook(Hook):
    """Every ``interval`` iterations (and at the end), Dice/mAP of the current weights through the predictor.

    Scores go to the log and the visualiser as ``val/<name>_<prompt>_dice``; the model being trained
    is not touched (the weights are copied into a fresh predictor model).
    """

    priority = "LOW"

    def __init__(
        self,
        ann_file: str,
        interval: int = 5000,
        prompts=("point", "box"),
        refine: bool = True,
        max_images: int | None = None,
        name: str = "val",
        shared_data_root: str = "../shared/data",
        splits_root: str = "work_dirs/data",
    ) -> None:
        self.ann_file = ann_file
        self.interval = interval
        self.prompts = tuple(prompts)
        self.refine = refine
        self.max_images = max_images
        self.name = name
        self.shared_data_root = shared_data_root
        self.splits_root = splits_root

    def _validate(self, runner) -> None:
        if not is_main_process():
            return
        from ultrasam.models import model_from_state_dict

        from ultrasam_training.evaluation.dataset import EvalDataset
        from ultrasam_training.evaluation.runner import evaluate_dataset
        from ultrasam_training.evaluation.segmenters import ModelSegmenter
        from ultrasam_training.train.dataset import resolve_annotation_file

        model = _model(runner)
        device = next(model.parameters()).device
        deployed = model_from_state_dict(model.state_dict(), family=model.spec.family, fast=True).to(device)
        ann_file = resolve_annotation_file(self.ann_file, self.shared_data_root, self.splits_root)
        dataset = EvalDataset.load(ann_file, name=self.name, limit=self.max_images)
        segmenter = ModelSegmenter(
            deployed, name=f"iter_{runner.iter}", refine=self.refine and deployed.spec.mask_prompt
        )
        scalars = {}
        for result in evaluate_dataset(segmenter, dataset, self.prompts, progress=False):
            runner.logger.info(f"iter {runner.iter}: {result.line()}")
            scalars[f"val/{self.name}_{result.prompt}_dice"] = result.summary["mean Dice"]
            scalars[f"val/{self.name}_{result.prompt}_mAP"] = result.summary["mAP"]
        runner.visualizer.add_scalars(scalars, step=runner.iter)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.interval and self.every_n_train_iters(runner, self.interval) and not self.is_last_train_iter(runner):
            self._validate(runner)

    def after_train(self, runner) -> None:
        self._validate(runner)
