"""Class-agnostic COCO instances as UltraSam training samples (protocol §3, §4).

One sample = one image with all (or at most ``max_instances``) of its instances:

* pixels of any size and bit depth → ``ultrasam.transforms.to_rgb_uint8``; horizontal flip with
  probability ``flip_prob`` *before* the resize, as the original; then the family's own resize,
  normalisation and padding via ``prepare_input`` (bit-exact with the predictor) — or, with an
  embedding cache, the frozen encoder's embedding of that very input;
* GT masks: nearest to the resized frame, padded, bilinear to 256², rounded (``targets``);
* one prompt per instance (``prompts.sample_training_prompts``, or a deterministic evaluation
  prompt with ``prompt_mode`` ``point``/``inside``/``box``).

Indices from :class:`~ultrasam_training.train.sampler.SeededStreamSampler` are
``(index, seed, draw)``: flip, instance subset and prompts come from a generator keyed by
``(seed, draw)``, so the stream of samples is a pure function of the seed and the position.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from mmengine.registry import DATASETS, FUNCTIONS
from torch.utils.data import Dataset

from ultrasam.models.spec import FAMILY_SPECS
from ultrasam.transforms import InputGeometry, prepare_input, resized_shape, to_rgb_uint8
from ultrasam_training.train.errors import TrainingError
from ultrasam_training.train.prompts import gt_box, model_frame_eval_prompts, prompt_rng, sample_training_prompts
from ultrasam_training.train.targets import LOW_RES, low_res_targets, masks_to_frame

log = logging.getLogger(__name__)

SHARED_PREFIX = "shared:"
PROMPT_MODES = ("train", "point", "inside", "box")


def resolve_annotation_file(name: str | Path, shared_data_root: str | Path, splits_root: str | Path) -> Path:
    """A COCO path, or ``shared:<split>`` for the split files built from the shared real data.

    ``shared:train`` (``val``, ``test_busi``, ``test_hc18``, ``test_mmotu``) runs the data
    pipeline's ``build_shared_splits(shared_data_root, splits_root, if_exists="reuse")``.
    """
    text = str(name)
    if not text.startswith(SHARED_PREFIX):
        path = Path(text).expanduser()
        if not path.is_file():
            raise TrainingError(f"annotation file not found: {path}")
        return path
    from ultrasam_training.data.build import SHARED_OUTPUTS, build_shared_splits

    split = text[len(SHARED_PREFIX) :]
    if split not in SHARED_OUTPUTS:
        raise TrainingError(f"unknown shared split {split!r}; choose from {', '.join(SHARED_OUTPUTS)}")
    if not Path(shared_data_root).is_dir():
        raise TrainingError(f"shared data folder not found: {shared_data_root} (set ULTRASAM_SHARED_DIR)")
    return Path(build_shared_splits(shared_data_root, splits_root, if_exists="reuse")[split])


def read_rgb(path: Path) -> np.ndarray:
    """An image file as the ``H×W×3`` uint8 the models take (non-8-bit data windowed by the library rule)."""
    from ultrasam_training.data.images import read_array

    return to_rgb_uint8(read_array(path))


def _organ_matches(organ: str, wanted: Sequence[str]) -> bool:
    organ = organ.lower()
    return any(w.lower() in organ for w in wanted)


@DATASETS.register_module()
class UltraSamCocoDataset(Dataset):
    """Images of class-agnostic COCO files with their instance masks and simulated prompts.

    Args:
        ann_file: a COCO path or ``shared:<split>`` (see :func:`resolve_annotation_file`); a list merges several.
        family: preprocessing family (``ultrasam``, ``litemedsam`` …, see ``ultrasam.models.spec``).
        prompt_mode: ``train`` (random point/box, flip) or a fixed evaluation prompt.
        flip_prob: horizontal flip probability (train mode only).
        max_instances: sample at most this many instances per image per step (None: all).
        point_probability, box_jitter: prompt simulation (§4: 0.5 and 0.05).
        include_datasets / exclude_datasets: dataset keys (image ``dataset`` field) to keep / drop.
        include_organs / exclude_organs: organs (data registry, case-insensitive substring) to keep / drop.
        max_images: keep only the first N images (smoke tests).
        embedding_cache: ``dict(checkpoint=..., family=..., directory=..., dtype='float32')`` to return
            frozen-encoder embeddings instead of pixels.
        seed: generator seed when indices are plain ints (evaluation); the sampler's seed wins otherwise.
    """

    metainfo = {"classes": ("object",)}

    def __init__(
        self,
        ann_file: str | Sequence[str],
        family: str = "ultrasam",
        prompt_mode: str = "train",
        flip_prob: float = 0.5,
        max_instances: int | None = None,
        point_probability: float = 0.5,
        box_jitter: float = 0.05,
        include_datasets: Sequence[str] | None = None,
        exclude_datasets: Sequence[str] | None = None,
        include_organs: Sequence[str] | None = None,
        exclude_organs: Sequence[str] | None = None,
        max_images: int | None = None,
        embedding_cache: dict | None = None,
        shared_data_root: str = "../shared/data",
        splits_root: str = "work_dirs/data",
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        if family not in FAMILY_SPECS:
            raise TrainingError(f"unknown family {family!r}; known: {', '.join(FAMILY_SPECS)}")
        if prompt_mode not in PROMPT_MODES:
            raise TrainingError(f"prompt_mode must be one of {PROMPT_MODES}, not {prompt_mode!r}")
        if max_instances is not None and max_instances < 1:
            raise TrainingError("max_instances must be at least 1 (or None for all)")
        self.spec = FAMILY_SPECS[family]
        self.prompt_mode = prompt_mode
        self.flip_prob = flip_prob if prompt_mode == "train" else 0.0
        self.max_instances = max_instances
        self.point_probability = point_probability
        self.box_jitter = box_jitter
        self.seed = seed
        files = [ann_file] if isinstance(ann_file, (str, Path)) else list(ann_file)
        self.ann_files = [resolve_annotation_file(f, shared_data_root, splits_root) for f in files]
        self.records = self._load_records(
            include_datasets, exclude_datasets, include_organs, exclude_organs, max_images
        )
        if not self.records:
            raise TrainingError(
                f"no image with instances left in {', '.join(map(str, self.ann_files))} after filtering"
            )
        self.cache = None
        if embedding_cache:
            from ultrasam_training.train.embeddings import build_embedding_cache

            options = dict(embedding_cache)
            self.cache = build_embedding_cache(
                [r["path"] for r in self.records],
                read_rgb,
                checkpoint=options.pop("checkpoint"),
                family=options.pop("family", family),
                directory=options.pop("directory", "work_dirs/cache/embeddings"),
                progress=progress,
                **options,
            )
        log.info(
            "%d images, %d instances from %s",
            len(self.records),
            sum(len(r["annotations"]) for r in self.records),
            ", ".join(map(str, self.ann_files)),
        )

    # ------------------------------------------------------------------ records
    def _load_records(self, include_datasets, exclude_datasets, include_organs, exclude_organs, max_images):
        from ultrasam_training.data.coco import load_coco, resolve_image_path
        from ultrasam_training.data.registry import organ_of

        records = []
        for ann_file in self.ann_files:
            coco = load_coco(ann_file)
            by_image: dict[int, list[dict]] = {}
            for annotation in coco["annotations"]:
                if not annotation.get("iscrowd", 0):
                    by_image.setdefault(annotation["image_id"], []).append(annotation)
            for image in coco["images"]:
                dataset = str(image.get("dataset", ""))
                if include_datasets and dataset not in include_datasets:
                    continue
                if exclude_datasets and dataset in exclude_datasets:
                    continue
                organ = organ_of(dataset) if dataset else "unknown"
                if include_organs and not _organ_matches(organ, include_organs):
                    continue
                if exclude_organs and _organ_matches(organ, exclude_organs):
                    continue
                annotations = by_image.get(image["id"], [])
                if not annotations:
                    continue  # filter_empty_gt, as the original
                records.append(
                    {
                        "image": image,
                        "annotations": annotations,
                        "path": resolve_image_path(ann_file, image["file_name"]),
                        "dataset": dataset,
                    }
                )
        return records[:max_images] if max_images else records

    def __len__(self) -> int:
        return len(self.records)

    def instance_masks(self, index: int) -> np.ndarray:
        """``(N, H, W)`` bool GT masks of image ``index`` at original resolution."""
        from ultrasam_training.data.coco import decode_annotation_mask

        record = self.records[index]
        height, width = record["image"]["height"], record["image"]["width"]
        return np.stack([decode_annotation_mask(a, height, width) for a in record["annotations"]])

    # ------------------------------------------------------------------ samples
    def __getitem__(self, key: int | tuple[int, int, int]) -> dict[str, Any]:
        index, seed, draw = (int(key), self.seed, int(key)) if np.isscalar(key) else (int(k) for k in key)
        rng = prompt_rng(seed, draw)
        record = self.records[index]
        flipped = bool(rng.random() < self.flip_prob) if self.flip_prob > 0 else False
        masks = self.instance_masks(index)
        if self.max_instances is not None and len(masks) > self.max_instances:
            masks = masks[np.sort(rng.choice(len(masks), self.max_instances, replace=False))]
        if flipped:
            masks = masks[:, :, ::-1]
        height, width = masks.shape[1:]
        geometry = InputGeometry((height, width), resized_shape(height, width, self.spec), self.spec.image_size)
        if self.cache is not None:
            inputs = self.cache.get(index, flipped)
        else:
            rgb = read_rgb(record["path"])
            if rgb.shape[:2] != (height, width):
                raise TrainingError(f"{record['path']}: image is {rgb.shape[:2]}, annotations say {(height, width)}")
            if flipped:
                rgb = np.ascontiguousarray(rgb[:, ::-1])
            inputs, _ = prepare_input(rgb, self.spec)
            inputs = inputs[0]
        frame_masks = masks_to_frame(masks, geometry.resized_hw)
        if self.prompt_mode == "train":
            boxes = np.stack([gt_box(m) for m in masks]) * np.tile(geometry.scale_xy, 2)
            prompts = sample_training_prompts(
                frame_masks,
                boxes,
                rng,
                point_probability=self.point_probability,
                max_jitter=self.box_jitter,
                original_masks=masks,
                scale_xy=geometry.scale_xy,
            )
        else:
            prompts = model_frame_eval_prompts(masks, self.prompt_mode, geometry.scale_xy)
        return {
            "inputs": inputs,
            "targets": low_res_targets(frame_masks, self.spec.image_size, LOW_RES),
            "coords": torch.from_numpy(prompts.coords.astype(np.float32)),
            "labels": torch.from_numpy(prompts.labels),
            "kinds": torch.from_numpy(prompts.kinds),
            "embedded": self.cache is not None,
            "embedding_level": self.cache.level if self.cache is not None else "",
            "encoder_digest": self.cache.digest if self.cache is not None else "",
            "image_id": int(record["image"]["id"]),
            "flipped": flipped,
            "draw": draw,
            "seed": seed,
            # the image's extent on the 256² target grid: simulated clicks never land in the padding
            "valid_hw": tuple(int(round(v * LOW_RES / self.spec.image_size)) for v in geometry.resized_hw),
        }


@FUNCTIONS.register_module()
def ultrasam_collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack images (or embeddings) and concatenate instances, grouped by image in batch order."""
    embedded = {s["embedded"] for s in samples}
    if len(embedded) != 1:
        raise TrainingError("a batch mixes cached embeddings and pixels")
    levels = {s.get("embedding_level", "") for s in samples}
    if len(levels) != 1:
        raise TrainingError("a batch mixes embeddings cached at different encoder levels")
    return {
        "inputs": torch.stack([s["inputs"] for s in samples]),
        "targets": torch.cat([s["targets"] for s in samples]),
        "coords": torch.cat([s["coords"] for s in samples]),
        "labels": torch.cat([s["labels"] for s in samples]),
        "kinds": torch.cat([s["kinds"] for s in samples]),
        "counts": [len(s["kinds"]) for s in samples],
        "embedded": embedded.pop(),
        "embedding_level": levels.pop(),
        "encoder_digests": [s["encoder_digest"] for s in samples],
        "image_ids": [s["image_id"] for s in samples],
        "draws": [s["draw"] for s in samples],
        "seeds": [s.get("seed", 0) for s in samples],
        "valid_hw": [s.get("valid_hw", (LOW_RES, LOW_RES)) for s in samples],
    }
