"""Image classification on an encoder's pooled last feature map (protocol §8.1), as mmengine parts.

The paper's model: global average pooling of the last feature map (pre-neck, see
:mod:`.encoders`), a linear multi-label head (one sigmoid per class, prediction = highest score),
focal loss (γ 2, α 0.25, mean over classes and images, as mmpretrain's ``FocalLoss``), AdamW 1e-4,
wd 1e-4, grad clip 0.1, warm-up then ×0.1 (the schedule lives in the configs).

Two input modes share one model:

* ``pixels``: images through the encoder, trained as the variant says (:mod:`.backbones`);
* ``features``: pooled features of a frozen encoder read from :mod:`.feature_cache` (linear
  probe; one encoder pass for the whole benchmark). The head then standardises its input with
  the training set's mean and standard deviation (:class:`FitStandardizeHook`), so one learning
  rate suits every encoder's feature scale.

The same model, fed cached prompt descriptors, is the prompted classifier's head (:mod:`.prompted`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel, is_model_wrapper
from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchvision.ops import sigmoid_focal_loss

from ultrasam.models.spec import FAMILY_SPECS
from ultrasam.transforms import prepare_input, resized_shape
from ultrasam_training.downstream import busi
from ultrasam_training.downstream.encoders import count_parameters, pool_descriptor, valid_fractions
from ultrasam_training.downstream.metrics import point_metrics
from ultrasam_training.downstream.prompt_classifier import Standardize, mlp_head, scores_to_probabilities
from ultrasam_training.train.errors import TrainingError

log = logging.getLogger(__name__)


def input_spec(family: str, input_size: int | None = None):
    """The family's preprocessing, optionally at another input size (smoke runs, ResNet-50)."""
    if family not in FAMILY_SPECS:
        raise TrainingError(f"unknown family {family!r}; known: {', '.join(FAMILY_SPECS)}")
    spec = FAMILY_SPECS[family]
    return spec.with_(image_size=int(input_size)) if input_size else spec


def _unpack(key: Any, default_seed: int) -> tuple[int, int, int]:
    """``(index, seed, draw)`` from a plain index or a :class:`SeededStreamSampler` triple."""
    if np.isscalar(key):
        return int(key), default_seed, int(key)
    index, seed, draw = (int(k) for k in key)
    return index, seed, draw


@DATASETS.register_module()
class BusiImageDataset(Dataset):
    """BUSI images of one split with their class (benign / malignant / normal).

    Args:
        split: ``train``, ``val`` or ``test`` of ``splits.json``.
        mode: ``pixels`` (the family's model input) or ``features`` (cached pooled features).
        encoder: weights the features come from (``features`` mode).
        pool: ``pre_neck`` (the paper's), ``neck`` or ``levels`` (every level's mean, concatenated).
        flips: flips cached per image in ``features`` mode; with ``(False, True)`` training draws
            one at random with ``flip_prob``.
        flip_prob: horizontal flip probability while training.
        per_class: keep the first N images of each class (smoke runs).
        random_init: in ``features`` mode, the seed of a random initialisation of the encoder's
            architecture (:func:`~.encoders.reinitialise`) instead of its weights: the frozen
            random-features baseline of a linear probe.
    """

    classes = busi.IMAGE_CLASSES
    metainfo = {"classes": busi.IMAGE_CLASSES}

    def __init__(
        self,
        split: str,
        data_root: str,
        mode: str = "pixels",
        family: str = "litemedsam",
        input_size: int | None = None,
        encoder: str | None = None,
        pool: str = "pre_neck",
        feature_dir: str = "work_dirs/cache/downstream_features",
        flips: Sequence[bool] = (False,),
        flip_prob: float = 0.0,
        per_class: int | None = None,
        seed: int = 0,
        progress: bool = True,
        random_init: int | None = None,
    ) -> None:
        if mode not in ("pixels", "features"):
            raise TrainingError(f"mode must be pixels or features, not {mode!r}")
        self.split = split
        self.items = busi.classification_items(data_root, split, per_class)
        self.mode = mode
        self.spec = input_spec(family, input_size)
        self.flip_prob = flip_prob
        self.seed = seed
        self.pool = pool
        self.features = None
        if mode == "features":
            if not encoder:
                raise TrainingError("features mode needs the encoder the features come from")
            from ultrasam_training.downstream.feature_cache import pooled_features
            from ultrasam_training.train.dataset import read_rgb

            self.features = pooled_features(
                [i.path for i in self.items],
                read_rgb,
                encoder,
                family,
                feature_dir,
                flips=flips,
                progress=progress,
                random_init=random_init,
                pools=(pool,),
            )

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> np.ndarray:
        return np.array([item.label for item in self.items], np.int64)

    def feature_matrix(self) -> np.ndarray:
        """All cached features of this split (every flip), for fitting the standardisation."""
        if self.features is None:
            raise TrainingError("no cached features in pixels mode")
        array = self.features.arrays[self.pool]
        return array.reshape(-1, array.shape[-1])

    def __getitem__(self, key: Any) -> dict[str, Any]:
        index, seed, draw = _unpack(key, self.seed)
        item = self.items[index]
        rng = np.random.default_rng([seed & 0xFFFFFFFF, draw, 11])
        flipped = bool(self.flip_prob > 0 and rng.random() < self.flip_prob)
        if self.features is not None:
            flipped = flipped and True in self.features.flips
            inputs = torch.from_numpy(self.features.get(index, flipped, self.pool).copy())
            valid = torch.ones(2)
        else:
            from ultrasam_training.train.dataset import read_rgb

            rgb = read_rgb(item.path)
            if flipped:
                rgb = np.ascontiguousarray(rgb[:, ::-1])
            inputs = prepare_input(rgb, self.spec)[0][0]
            valid = torch.tensor(valid_fractions(resized_shape(*rgb.shape[:2], self.spec), self.spec.image_size))
        return {"inputs": inputs, "labels": item.label, "valid": valid, "keys": item.key}


@MODELS.register_module()
class DownstreamClassifier(BaseModel):
    """Encoder (or cached features) → pooled descriptor → linear/MLP multi-label head, focal loss.

    Args:
        encoder: weights (registry name or file) of a SAM-family model; ``resnet50`` for the
            ImageNet baseline; None with ``feature_dim`` for cached inputs.
        variant: see :mod:`.backbones` (``linear``, ``finetune``, ``lora``, ``medsa``, ``scratch``).
        cached: inputs are pooled features (or prompt descriptors), not images.
        feature_dim: width of cached inputs.
        head: ``dict(hidden=(), dropout=0.0, standardize=False)``.
        focal: ``dict(alpha=0.25, gamma=2.0)``.
        head_init: a checkpoint of a run with the same head (e.g. the linear probe's selected
            ``best_*.pth``) whose ``head.*`` tensors start this head — linear probing, then
            fine-tuning. A CPU run's 240 steps cannot train a head from scratch at the paper's
            learning rate (a linear probe reaches val 0.56 at 1e-4 in 2000 steps); starting from the
            probe, the encoder's steps go into adapting the features.
    """

    def __init__(
        self,
        num_classes: int,
        encoder: str | None = None,
        family: str | None = None,
        variant: str = "linear",
        pool: str = "pre_neck",
        cached: bool = False,
        feature_dim: int | None = None,
        head: dict | None = None,
        focal: dict | None = None,
        lora: dict | None = None,
        medsa: dict | None = None,
        resnet_weights: str | None = None,
        seed: int = 0,
        head_init: str | None = None,
        data_preprocessor: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor or dict(type="BaseDataPreprocessor"))
        self.num_classes = num_classes
        self.cached = cached
        self.pool = pool
        self.variant = variant
        self.focal = {"alpha": 0.25, "gamma": 2.0, **(focal or {})}
        self.features = None
        if cached:
            if not feature_dim:
                raise TrainingError("cached inputs need feature_dim")
            in_dim = int(feature_dim)
        elif encoder == "resnet50":
            from ultrasam_training.downstream.backbones import ResNet50Features

            self.features = ResNet50Features(resnet_weights, variant, seed)
            in_dim = self.features.channels(pool)
        else:
            if not encoder:
                raise TrainingError("an encoder (weights name or file) is needed unless inputs are cached")
            from ultrasam_training.downstream.backbones import build_encoder_features

            self.features, _ = build_encoder_features(encoder, family, variant, lora, medsa, seed)
            in_dim = self.features.channels(pool)
        head = dict(head or {})
        self.hidden = tuple(head.get("hidden", ()))
        self.head = mlp_head(in_dim, num_classes, self.hidden, head.get("dropout", 0.0), head.get("standardize", False))
        self.head_init = head_init
        if head_init:
            load_head(self.head, head_init)
        trainable, total = count_parameters(self)
        log.info("classifier: %s variant, %d trainable of %d parameters", variant, trainable, total)

    def train(self, mode: bool = True) -> "DownstreamClassifier":
        super().train(mode)
        if self.features is not None and self.variant in ("linear", "frozen"):
            self.features.eval()  # frozen encoder: inference behaviour (no dropout, fixed statistics)
        return self

    def descriptor(self, inputs: Tensor, valid: Tensor | None = None) -> Tensor:
        if self.cached:
            return inputs.float()
        out = self.features(inputs, with_levels=self.pool == "levels", with_neck=self.pool == "neck")
        return pool_descriptor(out, self.pool, valid)

    def forward(
        self, inputs: Tensor, labels: Tensor | None = None, valid: Tensor | None = None, mode: str = "loss", **_: Any
    ):
        logits = self.head(self.descriptor(inputs, valid))
        if mode == "tensor":
            return logits
        if mode == "loss":
            target = F.one_hot(labels.long(), self.num_classes).float()
            return {"loss_focal": sigmoid_focal_loss(logits, target, reduction="mean", **self.focal)}
        if mode == "predict":
            scores = torch.sigmoid(logits.float())
            probabilities = scores_to_probabilities(scores)
            label_list = labels.tolist() if labels is not None else [None] * len(scores)
            return [{"probabilities": p.cpu().numpy(), "label": label} for p, label in zip(probabilities, label_list)]
        raise TrainingError(f"unknown mode {mode!r}")


def load_head(head: nn.Module, checkpoint: str | Path) -> None:
    """Copy the ``head.*`` tensors of a classification run's checkpoint (or of the one ``best_*.pth``
    in a run's folder) into ``head`` (shapes must match).

    Read with the restricted reader (no pickled code runs); a checkpoint of another head shape
    (pooling, width, classes, standardisation) is refused with both shapes named."""
    from ultrasam.checkpoints import read_checkpoint

    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():  # a run's work dir: its selected checkpoint
        best = sorted(checkpoint.glob("best_*.pth"))
        if len(best) != 1:
            raise TrainingError(f"{checkpoint}: expected one selected best_*.pth, found {len(best)}")
        checkpoint = best[0]
    container = read_checkpoint(checkpoint, allow_stubs=False)
    state = container.get("state_dict", container) if isinstance(container, dict) else None
    if not isinstance(state, dict):
        raise TrainingError(f"{checkpoint}: no state_dict in this checkpoint")
    tensors = {k[len("head.") :]: v for k, v in state.items() if k.startswith("head.")}
    expected = head.state_dict()
    mismatched = sorted(
        k for k in set(expected) | set(tensors) if k not in tensors or k not in expected or tensors[k].shape != expected[k].shape
    )
    if not tensors or mismatched:
        found = {k: tuple(v.shape) for k, v in tensors.items()}
        wanted = {k: tuple(v.shape) for k, v in expected.items()}
        raise TrainingError(f"{checkpoint}: its head {found or 'is missing'} does not fit this head {wanted}")
    head.load_state_dict(tensors)
    log.info("head initialised from %s", checkpoint)


@METRICS.register_module()
class DownstreamClassificationMetric(BaseMetric):
    """Macro-F1, accuracy and AUROC of a validation pass (``busi/macro_f1`` selects the checkpoint)."""

    default_prefix = "busi"

    def __init__(self, num_classes: int, collect_device: str = "cpu", prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_classes = num_classes

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            self.results.append((sample["probabilities"], sample["label"]))

    def compute_metrics(self, results: list) -> dict[str, float]:
        probabilities = np.stack([r[0] for r in results])
        labels = np.array([r[1] for r in results])
        return dict(point_metrics(labels, probabilities, self.num_classes))


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class FitStandardizeHook(Hook):
    """Before training, set the head's standardisation to the training features' mean and std.

    Only on a fresh start: a resumed run has the statistics in its checkpoint already, and a head
    started from another run's (``head_init``) keeps that run's.
    """

    priority = "VERY_HIGH"

    def before_train(self, runner) -> None:
        model = _unwrap(runner.model)
        standardize = model.head[0]
        if not isinstance(standardize, Standardize) or runner.iter > 0 or getattr(model, "head_init", None):
            return
        matrix = torch.from_numpy(np.asarray(runner.train_dataloader.dataset.feature_matrix(), np.float32))
        with torch.no_grad():
            standardize.mean.copy_(matrix.mean(dim=0))
            standardize.std.copy_(matrix.std(dim=0).clamp_min(1e-6))
        runner.logger.info(f"standardised the head's input with {len(matrix)} training vectors")


@HOOKS.register_module()
class CostRecordHook(Hook):
    """Trainable / total parameters and seconds per training iteration (data loading included).

    The run driver reads :attr:`stats` after training for the report's cost table.
    """

    priority = "LOW"

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.parameters: tuple[int, int] = (0, 0)
        self._last: float | None = None

    def before_train(self, runner) -> None:
        self.parameters = count_parameters(_unwrap(runner.model))
        runner.logger.info(f"trainable parameters: {self.parameters[0]:,} of {self.parameters[1]:,}")
        self._last = time.perf_counter()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.seconds.append(now - self._last)
        self._last = now

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._last = time.perf_counter()  # validation time is not training time

    @property
    def stats(self) -> dict[str, float]:
        times = self.seconds[1:] or self.seconds  # the first iteration carries one-off set-up
        return {
            "trainable_parameters": self.parameters[0],
            "total_parameters": self.parameters[1],
            "seconds_per_iteration": float(np.median(times)) if times else float("nan"),
        }
