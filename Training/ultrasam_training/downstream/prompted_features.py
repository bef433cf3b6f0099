"""Prompt descriptors of every GT lesion, made by the deployed classifier's own functions and cached on disk.

The descriptors come from :func:`.prompt_classifier.encode_image` and
:func:`.prompt_classifier.describe_prompt`, the very functions a deployed classifier calls, with the
library's preprocessing (``prepare_input``), prompt geometry and ``segment_anything``'s own decoder
(single-mask pass, what the predictor returns without refinement). The SAM model is frozen: each
image is encoded once and each lesion decoded once per prompt kind.

Prompts are the evaluation's (``ultrasam_training.evaluation.prompts``): the exact GT box, or the
GT mask's centroid as one positive click.

Cache: ``<directory>/<digest of all SAM tensors>-<family>/<image content digest>-<prompts digest>.npz``
with ``descriptors [lesions, kinds, D]`` and ``empty [lesions, kinds]`` (predicted mask empty).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from ultrasam_training.downstream.busi import LesionImage, content_digest
from ultrasam_training.downstream.prompt_classifier import describe_prompt, encode_image

log = logging.getLogger(__name__)

PROMPT_KINDS = ("box", "point")


@dataclass
class LesionDescriptors:
    """Descriptors of a list of lesion images, flattened to one row per lesion."""

    descriptors: np.ndarray  # [lesions, kinds, D] float32
    empty: np.ndarray  # [lesions, kinds] bool: the predicted mask was empty (soft pooling used)
    labels: np.ndarray  # [lesions] int: index into busi.LESION_CLASSES
    keys: list[tuple[str, str]]  # (image key, annotation id)
    kinds: tuple[str, ...]
    layout: dict[str, int]
    model_digest: str
    family: str
    computed: int = 0
    reused: int = 0
    folder: Path = field(default_factory=Path)


def _prompt_arguments(kind: str, annotation: dict, mask: np.ndarray) -> dict:
    from ultrasam_training.evaluation.prompts import prompt_arguments

    return prompt_arguments(kind, annotation, mask)


def _prompts_digest(image: LesionImage, masks: np.ndarray, kinds: Sequence[str]) -> str:
    spec = []
    for lesion, mask in zip(image.lesions, masks):
        for kind in kinds:
            args = _prompt_arguments(kind, lesion.annotation, mask)
            spec.append([lesion.annotation_id, kind, {k: np.round(v, 4).tolist() for k, v in args.items()}])
    text = json.dumps({"prompts": spec, "refine": False}, sort_keys=True)  # descriptors: the single-mask pass
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def lesion_descriptors(
    images: Sequence[LesionImage],
    source: str,
    family: str | None = None,
    directory: str | Path = "work_dirs/cache/prompted",
    kinds: Sequence[str] = PROMPT_KINDS,
    progress: bool = True,
    pooled_dir: str | Path | None = None,
) -> LesionDescriptors:
    """Descriptors of every lesion of ``images`` for each prompt kind (cached; see module doc).

    ``pooled_dir``: also store each newly encoded image's pooled features in that
    :mod:`.feature_cache` directory (one encoder pass serves both benchmarks).
    """
    from ultrasam.models import open_model
    from ultrasam_training.train.dataset import read_rgb
    from ultrasam_training.train.model import encoder_digest

    kinds = tuple(kinds)
    model = open_model(source, family=family, device="cpu", fast=True)
    digest = encoder_digest(model.sam)
    folder = Path(directory) / f"{digest}-{model.spec.family}"
    folder.mkdir(parents=True, exist_ok=True)
    pooled = None
    if pooled_dir is not None:
        from ultrasam_training.downstream.feature_cache import cache_folder

        pooled = cache_folder(pooled_dir, model.sam.image_encoder, model.spec.family)
    rows, empties, labels, keys = [], [], [], []
    computed = reused = 0
    for image in tqdm(images, desc="prompt descriptors", unit="img", disable=not progress):
        masks = image.masks()
        entry = folder / f"{content_digest(image.path)}-{_prompts_digest(image, masks, kinds)}.npz"
        if entry.is_file():
            with np.load(entry, allow_pickle=False) as data:
                descriptors, empty = data["descriptors"], data["empty"]
            reused += 1
        else:
            descriptors, empty = _compute(model, image, masks, kinds, read_rgb, pooled)
            tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp.npz")
            np.savez(tmp, descriptors=descriptors, empty=empty)
            os.replace(tmp, entry)
            computed += 1
        rows.append(descriptors)
        empties.append(empty)
        labels += [lesion.label for lesion in image.lesions]
        keys += [(image.key, lesion.annotation_id) for lesion in image.lesions]
    pre_neck = _pre_neck_channels(model.sam)
    embed = int(model.sam.prompt_encoder.embed_dim)
    return LesionDescriptors(
        descriptors=np.concatenate(rows).astype(np.float32),
        empty=np.concatenate(empties),
        labels=np.array(labels, np.int64),
        keys=keys,
        kinds=kinds,
        layout={"mask_token": embed, "conditioned": embed, "global": pre_neck},
        model_digest=digest,
        family=model.spec.family,
        computed=computed,
        reused=reused,
        folder=folder,
    )


def _pre_neck_channels(sam) -> int:
    return int(sam.image_encoder.neck[0].in_channels)


def _compute(model, image: LesionImage, masks: np.ndarray, kinds, read_rgb, pooled: Path | None = None):
    encoded = encode_image(model, read_rgb(image.path))
    if pooled is not None:
        _store_pooled(pooled, image.path, encoded, model)
    out, empty = [], np.zeros((len(image.lesions), len(kinds)), bool)
    for i, (lesion, mask) in enumerate(zip(image.lesions, masks)):
        row = []
        for j, kind in enumerate(kinds):
            prompt = _prompt_arguments(kind, lesion.annotation, mask)
            descriptor, empty[i, j] = describe_prompt(model, encoded, **prompt)
            row.append(descriptor.numpy())
        out.append(np.stack(row))
    return np.stack(out).astype(np.float32), empty


def _store_pooled(folder: Path, path: Path, encoded, model) -> None:
    """The image's pooled pre-neck and neck features into the linear probe's cache (same encoder pass)."""
    import torch

    from ultrasam_training.downstream.encoders import masked_mean, valid_fractions
    from ultrasam_training.downstream.feature_cache import store_unflipped

    geometry = encoded.geometry
    valid = torch.tensor([valid_fractions(geometry.resized_hw, geometry.input_size)])
    store_unflipped(folder, path, encoded.image_descriptor.numpy(), masked_mean(encoded.features, valid)[0].numpy())
