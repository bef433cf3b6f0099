"""Instance segmentation with Mask2Former on an encoder's feature pyramid (protocol §8.2).

Implementation: Hugging Face ``transformers``' ``Mask2FormerForUniversalSegmentation`` (pixel
decoder with 6 multi-scale deformable-attention layers, masked-attention transformer decoder, 100
queries, Hungarian matching with class 2 / mask 5 / dice 5 costs, 12,544 sampled points, no-object
weight 0.1 — the paper's settings are HF's defaults). Why not MMDetection: ``mmdet`` 3.3 pins
``mmcv < 2.2``, and mmcv 2.x publishes no wheels for torch 2.14 (its CUDA/C++ ops must be compiled
against the installed torch, and its deformable attention has no pure-PyTorch path); HF's model is
pure PyTorch (deformable attention via ``grid_sample``), installs from PyPI next to torch 2.14.1,
runs on a CPU and on CUDA, and is actively maintained.

The backbone: HF builds its own (Swin) from the config; here the pixel-level module is replaced by
:class:`EncoderPixelLevel`, which runs our encoder (any checkpoint ``open_model`` opens, prepared
for the variant by :mod:`.backbones`) and hands its four-level pyramid (:func:`.encoders.pyramid`)
to HF's own pixel decoder, initialised by HF's own ``_init_weights``. Nothing else of HF changes.
(The paper initialised the head from a COCO R50 Mask2Former; no such weights are reachable here,
so the head starts random — say so when comparing to its Table 3.)

Evaluation turns queries into instances as Mask2Former does (top-k of query × class scores, mask
probability > 0.5, score = class probability × mean mask probability inside the mask) and scores
them with pycocotools: COCO mask AP per class (benign, malignant) and class-agnostic.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, FUNCTIONS, METRICS, MODELS
from torch import Tensor, nn
from torch.utils.data import Dataset

from ultrasam.transforms import prepare_input
from ultrasam_training.downstream import busi
from ultrasam_training.downstream.classification import _unpack, input_spec
from ultrasam_training.downstream.encoders import pyramid, pyramid_channels, pyramid_strides, valid_fractions
from ultrasam_training.train.errors import TrainingError

log = logging.getLogger(__name__)


@DATASETS.register_module()
class BusiLesionDataset(Dataset):
    """BUSI images with lesions: the model input, lesion masks in the input frame, lesion classes.

    ``class_agnostic=True`` gives every lesion class 0 (one category, "lesion").
    """

    def __init__(
        self,
        split: str,
        data_root: str,
        splits_root: str = "work_dirs/data",
        family: str = "litemedsam",
        input_size: int | None = None,
        flip_prob: float = 0.0,
        per_class: int | None = None,
        class_agnostic: bool = False,
        seed: int = 0,
    ) -> None:
        self.split = split
        self.images = busi.lesion_images(data_root, split, splits_root, per_class)
        self.spec = input_spec(family, input_size)
        self.flip_prob = flip_prob
        self.class_agnostic = class_agnostic
        self.seed = seed

    @property
    def classes(self) -> tuple[str, ...]:
        return ("lesion",) if self.class_agnostic else busi.LESION_CLASSES

    @property
    def metainfo(self) -> dict:
        return {"classes": self.classes}

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        from ultrasam_training.train.dataset import read_rgb

        index, seed, draw = _unpack(key, self.seed)
        image = self.images[index]
        rng = np.random.default_rng([seed & 0xFFFFFFFF, draw, 13])
        flipped = bool(self.flip_prob > 0 and rng.random() < self.flip_prob)
        rgb, masks = read_rgb(image.path), image.masks()
        if flipped:
            rgb, masks = np.ascontiguousarray(rgb[:, ::-1]), np.ascontiguousarray(masks[:, :, ::-1])
        inputs, geometry = prepare_input(rgb, self.spec)
        size = self.spec.image_size
        new_h, new_w = geometry.resized_hw
        frame = F.interpolate(torch.from_numpy(masks).float()[None], (new_h, new_w), mode="nearest")[0]
        frame = F.pad(frame, (0, size - new_w, 0, size - new_h))
        labels = [0 if self.class_agnostic else lesion.label for lesion in image.lesions]
        return {
            "inputs": inputs[0],
            "masks": frame,
            "classes": torch.tensor(labels, dtype=torch.long),
            "valid": torch.tensor(valid_fractions((new_h, new_w), size)),
            "keys": image.key,
            "index": index,
        }


@FUNCTIONS.register_module()
def lesion_collate(samples: Sequence[dict]) -> dict[str, Any]:
    """Stack the images; keep the per-image masks and classes as lists (instance counts differ)."""
    return {
        "inputs": torch.stack([s["inputs"] for s in samples]),
        "masks": [s["masks"] for s in samples],
        "classes": [s["classes"] for s in samples],
        "valid": torch.stack([s["valid"] for s in samples]),
        "keys": [s["keys"] for s in samples],
        "index": [s["index"] for s in samples],
    }


class EncoderPixelLevel(nn.Module):
    """HF's pixel-level module with our encoder: encoder pyramid → HF ``Mask2FormerPixelDecoder``."""

    def __init__(self, features: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = features
        self.decoder = decoder

    def forward(self, pixel_values: Tensor, output_hidden_states: bool = False):
        from transformers.models.mask2former.modeling_mask2former import Mask2FormerPixelLevelModuleOutput

        trains = self.training and any(p.requires_grad for p in self.encoder.parameters())
        with torch.set_grad_enabled(trains and torch.is_grad_enabled()):
            out = self.encoder(pixel_values, with_levels=True, with_neck=getattr(self.encoder, "kind", "") == "tinyvit")
            maps, _ = pyramid(self.encoder, out)
        decoded = self.decoder(maps, output_hidden_states=output_hidden_states)
        return Mask2FormerPixelLevelModuleOutput(
            encoder_last_hidden_state=maps[-1],
            encoder_hidden_states=tuple(maps) if output_hidden_states else None,
            decoder_last_hidden_state=decoded.mask_features,
            decoder_hidden_states=decoded.multi_scale_features,
        )


def build_mask2former(features: nn.Module, num_classes: int, options: dict | None = None) -> nn.Module:
    """``Mask2FormerForUniversalSegmentation`` whose pixel-level module runs ``features``."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig
    from transformers.models.mask2former.modeling_mask2former import Mask2FormerPixelDecoder

    strides = pyramid_strides(features)
    # HF always builds its own backbone first; a one-block Swin keeps that throw-away step cheap.
    placeholder = SwinConfig(
        embed_dim=32, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], out_features=["stage1", "stage2", "stage3", "stage4"]
    )
    config = Mask2FormerConfig(
        backbone_config=placeholder,
        num_labels=num_classes,
        feature_strides=strides,
        common_stride=strides[0],
        **(options or {}),
    )
    net = Mask2FormerForUniversalSegmentation(config)
    decoder = Mask2FormerPixelDecoder(config, feature_channels=pyramid_channels(features))
    decoder.apply(net._init_weights)
    net.model.pixel_level_module = EncoderPixelLevel(features, decoder)
    return net


@MODELS.register_module()
class Mask2FormerSegmenter(BaseModel):
    """Mask2Former (HF) on a SAM-family encoder (or ResNet-50), trained with HF's own loss.

    Args:
        encoder, family, variant, lora, medsa, resnet_weights: as :class:`.classification.DownstreamClassifier`.
        num_classes: lesion classes (2: benign, malignant; 1: class-agnostic).
        mask2former: ``Mask2FormerConfig`` overrides (``num_queries``, ``encoder_layers``,
            ``decoder_layers``, ``train_num_points`` …).
    """

    def __init__(
        self,
        num_classes: int,
        encoder: str,
        family: str | None = None,
        variant: str = "frozen",
        mask2former: dict | None = None,
        lora: dict | None = None,
        medsa: dict | None = None,
        resnet_weights: str | None = None,
        seed: int = 0,
        data_preprocessor: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor or dict(type="BaseDataPreprocessor"))
        if encoder == "resnet50":
            from ultrasam_training.downstream.backbones import ResNet50Features

            features = ResNet50Features(resnet_weights, variant, seed)
        else:
            from ultrasam_training.downstream.backbones import build_encoder_features

            features, _ = build_encoder_features(encoder, family, variant, lora, medsa, seed)
        self.variant = variant
        self.net = build_mask2former(features, num_classes, mask2former)

    def init_weights(self) -> None:
        """Keep the weights made at construction: the encoder's checkpoint and HF's head initialisation.

        mmengine's Runner calls ``init_weights`` on the model's children, and the HF model's own
        ``init_weights`` re-runs ``_init_weights`` on every module it did not initialise itself, which
        here is the whole pixel-level module: the pretrained encoder (288 tensors of LiteMedSAM's,
        batch-norm statistics included) was silently replaced by random weights, and the first step's
        gradient norm read 1e10 or inf.
        """
        self._is_init = True

    def train(self, mode: bool = True) -> "Mask2FormerSegmenter":
        super().train(mode)
        if self.variant in ("linear", "frozen"):
            self.net.model.pixel_level_module.encoder.eval()
        return self

    def forward(
        self,
        inputs: Tensor,
        masks: list[Tensor] | None = None,
        classes: list[Tensor] | None = None,
        mode: str = "loss",
        **_: Any,
    ):
        if mode == "loss":
            out = self.net(
                pixel_values=inputs,
                mask_labels=[m.to(inputs.device) for m in masks],
                class_labels=[c.to(inputs.device) for c in classes],
            )
            return {"loss_mask2former": out.loss}
        if mode in ("predict", "tensor"):
            out = self.net(pixel_values=inputs)
            return [
                {"class_logits": c.float().cpu(), "mask_logits": m.float().cpu()}
                for c, m in zip(out.class_queries_logits, out.masks_queries_logits)
            ]
        raise TrainingError(f"unknown mode {mode!r}")


# --------------------------------------------------------------------------- queries → instances
def instances_from_queries(
    class_logits: Tensor,
    mask_logits: Tensor,
    valid: Sequence[float],
    input_size: int,
    original_hw: tuple[int, int],
    top_k: int = 100,
) -> list[dict]:
    """Mask2Former's instance post-processing, mapped back to the original image.

    Returns ``[{"label", "score", "mask" (bool H×W), "agnostic_score"}]``, best first; one entry per
    (query, class) of the top ``top_k`` scores.
    """
    probabilities = class_logits.softmax(-1)[:, :-1]  # drop "no object"
    queries, classes = probabilities.shape
    k = min(top_k, queries * classes)
    scores, flat = probabilities.flatten().topk(k)
    query_index, labels = flat // classes, flat % classes
    rows = max(1, int(np.ceil(valid[0] * input_size - 1e-6)))
    cols = max(1, int(np.ceil(valid[1] * input_size - 1e-6)))
    chosen = mask_logits[query_index][None]
    upsampled = F.interpolate(chosen, (input_size, input_size), mode="bilinear", align_corners=False)
    probability = F.interpolate(upsampled[..., :rows, :cols], original_hw, mode="bilinear", align_corners=False)[0]
    probability = probability.sigmoid()
    binary = probability > 0.5
    area = binary.flatten(1).sum(1).float()
    mask_score = (probability * binary).flatten(1).sum(1) / area.clamp_min(1)
    results = []
    for i in range(k):
        results.append(
            {
                "label": int(labels[i]),
                "score": float(scores[i] * mask_score[i]),
                "agnostic_score": float(probabilities[query_index[i]].max() * mask_score[i]),
                "query": int(query_index[i]),
                "mask": binary[i].numpy(),
            }
        )
    return sorted(results, key=lambda r: -r["score"])


@METRICS.register_module()
class LesionAPMetric(BaseMetric):
    """Class-agnostic COCO mask AP in the model's input frame, for checkpoint selection on val.

    The reported figures (original resolution, per class, with intervals) come from
    :mod:`.segmentation_eval` after training; for choosing a checkpoint the input frame is enough.
    """

    default_prefix = "busi"

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for output, masks, valid in zip(data_samples, data_batch["masks"], data_batch["valid"]):
            size = masks.shape[-1]
            rows = max(1, int(np.ceil(float(valid[0]) * size - 1e-6)))
            cols = max(1, int(np.ceil(float(valid[1]) * size - 1e-6)))
            truth = (masks[:, :rows, :cols] > 0.5).numpy()
            instances = instances_from_queries(
                output["class_logits"], output["mask_logits"], valid.tolist(), size, (rows, cols)
            )
            self.results.append((truth, [(i["agnostic_score"], i["mask"], i["query"]) for i in instances]))

    def compute_metrics(self, results: list) -> dict[str, float]:
        from ultrasam_training.downstream.segmentation_eval import _coco_ap
        from ultrasam_training.evaluation.metrics import encode_rle

        gt = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "lesion"}]}
        detections = []
        for image_id, (truth, instances) in enumerate(results, start=1):
            gt["images"].append({"id": image_id, "height": truth.shape[1], "width": truth.shape[2]})
            for mask in truth:
                rle = encode_rle(mask)
                gt["annotations"].append(
                    {
                        "id": len(gt["annotations"]) + 1,
                        "image_id": image_id,
                        "category_id": 1,
                        "segmentation": rle,
                        "area": int(mask.sum()),
                        "bbox": _bbox(mask),
                        "iscrowd": 0,
                    }
                )
            seen = set()
            for score, mask, query in instances:
                if query not in seen:  # one detection per query, its best class
                    seen.add(query)
                    detections.append(
                        {"image_id": image_id, "category_id": 1, "segmentation": encode_rle(mask), "score": score}
                    )
        ap, ap50 = _coco_ap(gt, detections, use_cats=False)
        return {"agnostic_AP": ap, "agnostic_AP50": ap50}


def _bbox(mask: np.ndarray) -> list[float]:
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0 = float(cols.min()), float(rows.min())
    return [x0, y0, float(cols.max()) - x0 + 1, float(rows.max()) - y0 + 1]
