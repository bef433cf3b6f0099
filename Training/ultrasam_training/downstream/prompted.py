"""Prompted classification (protocol §8.3, beyond the paper): a lesion's class from one prompt.

Training data: the cached descriptors of every BUSI lesion (:mod:`.prompted_features`) for a GT
box and for one centroid click, made by the frozen SAM model with the deployed classifier's code. The
head is :class:`.classification.DownstreamClassifier` on cached inputs: standardised descriptor →
MLP (hidden 256, as the original's ``cls_prediction_head``) → one sigmoid per class, focal loss.
Box and click descriptors of the training lesions are pooled into one training set, so one head
serves both prompts; the test split is reported per prompt kind.

After training the selected head is written as ``prompt_classifier.safetensors``
(:func:`.prompt_classifier.save_prompt_classifier`), loadable without the training extras.
**Research benchmark, not a diagnosis.**
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from mmengine.registry import DATASETS
from torch.utils.data import Dataset

from ultrasam_training.downstream import busi
from ultrasam_training.downstream.classification import _unpack
from ultrasam_training.downstream.prompted_features import PROMPT_KINDS, lesion_descriptors
from ultrasam_training.train.errors import TrainingError


@DATASETS.register_module()
class LesionDescriptorDataset(Dataset):
    """One item per (lesion, prompt kind) of a split: descriptor, class (benign 0 / malignant 1), key.

    Descriptors of both prompt kinds are always computed (one cache entry per image serves every
    config); ``kinds`` selects the ones this dataset yields.
    """

    classes = busi.LESION_CLASSES
    metainfo = {"classes": busi.LESION_CLASSES}

    def __init__(
        self,
        split: str,
        data_root: str,
        model: str,
        family: str | None = None,
        kinds: Sequence[str] = PROMPT_KINDS,
        splits_root: str = "work_dirs/data",
        cache_dir: str = "work_dirs/cache/prompted",
        per_class: int | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        unknown = set(kinds) - set(PROMPT_KINDS)
        if unknown or not kinds:
            raise TrainingError(f"prompt kinds must be among {PROMPT_KINDS}, got {list(kinds)}")
        images = busi.lesion_images(data_root, split, splits_root, per_class)
        self.descriptors = lesion_descriptors(images, model, family, cache_dir, PROMPT_KINDS, progress)
        self.kinds = tuple(kinds)
        columns = [PROMPT_KINDS.index(k) for k in self.kinds]
        self.samples = [(i, c) for c in columns for i in range(len(self.descriptors.labels))]
        self.seed = seed

    @property
    def layout(self) -> dict[str, int]:
        return self.descriptors.layout

    @property
    def labels(self) -> np.ndarray:
        return np.array([self.descriptors.labels[i] for i, _ in self.samples], np.int64)

    def feature_matrix(self) -> np.ndarray:
        return np.stack([self.descriptors.descriptors[i, c] for i, c in self.samples])

    def empty_masks(self) -> int:
        """How many of this dataset's prompts gave an empty predicted mask (soft pooling used)."""
        return int(sum(self.descriptors.empty[i, c] for i, c in self.samples))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        index, _, _ = _unpack(key, self.seed)
        lesion, column = self.samples[index]
        image_key, annotation_id = self.descriptors.keys[lesion]
        return {
            "inputs": torch.from_numpy(self.descriptors.descriptors[lesion, column].copy()),
            "labels": int(self.descriptors.labels[lesion]),
            "valid": torch.ones(2),
            "keys": f"{image_key}|{annotation_id}|{PROMPT_KINDS[column]}",
        }


def export_classifier(model, dataset: LesionDescriptorDataset, path: str | Path, meta: dict) -> Path:
    """Write the trained head of ``model`` as a loadable prompt classifier."""
    from ultrasam_training.downstream.prompt_classifier import save_prompt_classifier

    info = {"model_digest": dataset.descriptors.model_digest, "family": dataset.descriptors.family, **meta}
    identity = {"family": dataset.descriptors.family, "digest": dataset.descriptors.model_digest}
    if meta.get("model"):
        identity["source"] = str(meta["model"])
    return save_prompt_classifier(
        path, model.head, busi.LESION_CLASSES, dataset.layout, model.hidden, info, model=identity
    )
