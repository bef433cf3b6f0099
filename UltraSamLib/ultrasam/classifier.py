"""A lesion's class from one prompt's decoder output: the descriptor, the head, and a safe file format.

**Research benchmark, not a diagnosis.** The classifier says which of the training classes (BUSI:
benign / malignant) a lesion's features resemble, with probabilities calibrated on nothing but a
public dataset split. It must never be presented as, or used for, a clinical diagnosis.

Descriptor (protocol §8.3, the idea of the unfinished ``SamClassificationHead``), for one prompt:

* ``mask_token``: the mask decoder's output token for the mask that was returned (token 0 for a
  single-mask prediction);
* ``conditioned``: the prompt-conditioned image embedding (the two-way transformer's image-side
  output) averaged inside the predicted mask at embedding resolution; when the mask is empty (e.g.
  LiteMedSAM with a click), averaged with the sigmoid of the logits as soft weights instead, so the
  descriptor always exists;
* ``global``: the image descriptor, the encoder's pre-neck tokens averaged over the image area.

This is the inference half that a deployed classifier needs (the predictor, ``ultrasam segment
--classifier``, the Slicer module); it needs only torch, numpy and safetensors. Training lives in
``ultrasam_training.downstream`` (which re-exports these names). Files are safetensors (no pickle):
tensors plus a JSON header naming classes, descriptor layout and **the model the descriptors came
from** (family and a digest of every SAM tensor); :meth:`PromptClassifier.check_model` refuses
any other model, since a head fed another model's descriptors gives confident, meaningless
probabilities.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ultrasam.errors import UltraSamError

FORMAT = "ultrasam-prompt-classifier"
VERSION = 1
NOTICE = (
    "Research benchmark, not a diagnosis: class probabilities of a model trained on a public dataset "
    "split; not validated for clinical use."
)
SHORT_NOTICE = "research benchmark, not a diagnosis"
PARTS = ("mask_token", "conditioned", "global")

__all__ = [
    "NOTICE",
    "SHORT_NOTICE",
    "ClassifierError",
    "EncodedImage",
    "PromptClassifier",
    "describe_prompt",
    "encode_image",
    "format_label",
    "load_prompt_classifier",
    "model_identity",
    "save_prompt_classifier",
]


class ClassifierError(UltraSamError, ValueError):
    """A prompt-classifier file is not one, or was trained on another model than the one given."""


# --------------------------------------------------------------------------- model identity
def sam_digest(sam: nn.Module) -> str:
    """Digest of every tensor of a SAM model (encoder, prompt encoder, decoder), names included.

    The same rule as the training package's ``encoder_digest`` (blake2b-96 over the sorted state dict
    in fp32), so the descriptor cache, the exported file and the deployed model agree.
    """
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in sorted(sam.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()


def model_identity(model) -> dict[str, str]:
    """``{"family", "digest"}`` of an ``ultrasam`` SamModel: what a classifier file records."""
    return {"family": str(model.spec.family), "digest": sam_digest(model.sam)}


# --------------------------------------------------------------------------- descriptor
def soft_or_hard_mask(low_res_logits: Tensor, size: tuple[int, int]) -> tuple[Tensor, bool]:
    """Pooling weights at embedding resolution: the predicted mask, or soft weights if it is empty."""
    pooled = F.adaptive_avg_pool2d(low_res_logits.float()[None, None], size)[0, 0]
    hard = (pooled > 0).float()
    if hard.sum() > 0:
        return hard, False
    return torch.sigmoid(pooled), True


def valid_weights(size: tuple[int, int], valid: Sequence[float] | None, device=None) -> Tensor:
    """1 on the tokens covering the image (row / column fractions ``valid``), 0 on the padding."""
    h, w = size
    weight = torch.ones(h, w, device=device)
    if valid is not None:
        rows = max(1, min(h, int(np.ceil(float(valid[0]) * h - 1e-6))))
        cols = max(1, min(w, int(np.ceil(float(valid[1]) * w - 1e-6))))
        weight[rows:] = 0
        weight[:, cols:] = 0
    return weight


def build_descriptor(
    mask_token: Tensor,
    conditioned: Tensor,
    low_res_logits: Tensor,
    image_features: Tensor,
    valid: Sequence[float] | None = None,
) -> tuple[Tensor, bool]:
    """The descriptor of one prompt and whether its predicted mask was empty.

    mask_token ``(C,)``; conditioned ``(C, h, w)``; low_res_logits ``(256, 256)`` of the returned
    mask; image_features ``(C', h', w')`` pre-neck map, or ``(C',)`` already pooled with
    :func:`pool_image_features` (what a predictor keeps beside a cached embedding); valid:
    fraction of rows and columns of the padded input covered by the image.
    """
    size = tuple(conditioned.shape[-2:])
    weights, empty = soft_or_hard_mask(low_res_logits, size)
    weights = weights * valid_weights(size, valid, weights.device)
    if weights.sum() <= 0:
        weights = valid_weights(size, valid, weights.device)
    pooled = (conditioned.float() * weights).sum(dim=(1, 2)) / weights.sum()
    global_ = image_features.float() if image_features.ndim == 1 else pool_image_features(image_features, valid)
    return torch.cat([mask_token.float().flatten(), pooled, global_.to(pooled.device)]), empty


def pool_image_features(image_features: Tensor, valid: Sequence[float] | None = None) -> Tensor:
    """The global image descriptor: the ``(C', h', w')`` pre-neck map averaged over the image area."""
    area = valid_weights(tuple(image_features.shape[-2:]), valid, image_features.device)
    return (image_features.float() * area).sum(dim=(1, 2)) / area.sum()


def valid_fraction(geometry) -> tuple[float, float]:
    """Fraction of the padded model input's rows and columns that the image covers."""
    return geometry.resized_hw[0] / geometry.input_size, geometry.resized_hw[1] / geometry.input_size


@dataclass
class DecoderState:
    """What the hooks of :func:`capture_decoder_state` saw: the last encoder and decoder calls."""

    pre_neck: Tensor | None = None  # (B, C', h', w') input of the encoder's neck
    tokens: Tensor | None = None  # (N, T, C) two-way transformer token outputs (IoU token first)
    conditioned: Tensor | None = None  # (N, h*w, C) two-way transformer image-side outputs
    calls: int = 0


@contextlib.contextmanager
def capture_decoder_state(sam: nn.Module) -> Iterator[DecoderState]:
    """Record, without changing any computation, the pre-neck map and the decoder transformer outputs.

    Hooks ``sam.image_encoder.neck`` (its input) and ``sam.mask_decoder.transformer`` (its
    ``(tokens, image)`` output) for calls made inside the context; removed on exit. Used around
    this module's own encoder and decoder calls (:func:`encode_features`, :func:`decode_prompt`),
    which go through ``segment_anything``'s modules, so the hooks always fire.
    """
    state = DecoderState()

    def on_neck(_module, args):
        state.pre_neck = args[0].detach()

    def on_transformer(_module, _args, output):
        state.tokens, state.conditioned = output[0].detach(), output[1].detach()
        state.calls += 1

    handles = [
        sam.image_encoder.neck.register_forward_pre_hook(on_neck),
        sam.mask_decoder.transformer.register_forward_hook(on_transformer),
    ]
    try:
        yield state
    finally:
        for handle in handles:
            handle.remove()


@torch.inference_mode()
def encode_features(sam: nn.Module, tensor: Tensor, geometry) -> tuple[Tensor, Tensor]:
    """One encoder pass: the SAM embedding ``(1, C, h, w)`` and the pooled image descriptor ``(C',)``.

    What :func:`encode_image` and a :class:`~ultrasam.predictor.Predictor` with a classifier run
    (the descriptor is read from the same pass, never a second encoding).
    """
    with capture_decoder_state(sam) as state:
        features = sam.image_encoder(tensor)
    return features, pool_image_features(state.pre_neck[0], valid_fraction(geometry))


@dataclass
class EncodedImage:
    """An image as the classifier needs it: the SAM embedding, the pooled image descriptor, the geometry.

    ``features`` is exactly what :class:`ultrasam.predictor.Predictor` caches for the image; the
    ``image_descriptor`` (pooled pre-neck map) is the one extra vector a predictor with a classifier
    keeps beside it to classify prompts without re-encoding.
    """

    features: Tensor  # (1, C, h, w)
    image_descriptor: Tensor  # (C',)
    geometry: object  # ultrasam.transforms.InputGeometry


@torch.inference_mode()
def encode_image(model, image: np.ndarray) -> EncodedImage:
    """Encode ``image`` (any 2D array the predictor takes) with ``model`` (an ``ultrasam`` SamModel)."""
    from ultrasam.transforms import prepare_input, to_rgb_uint8

    tensor, geometry = prepare_input(to_rgb_uint8(image), model.spec, model.device)
    features, descriptor = encode_features(model.sam, tensor, geometry)
    return EncodedImage(features, descriptor, geometry)


@torch.inference_mode()
def decode_prompt(
    model,
    encoded: EncodedImage,
    box: np.ndarray | None = None,
    points: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The single-mask decoder pass for one prompt: (mask token, conditioned map, low-res logits, IoU).

    Prompts are in original-image pixels (the predictor's convention: box ``[x0, y0, x1, y1]``,
    points ``(N, 2)`` with labels). The pass is ``segment_anything``'s own ``predict_masks`` with
    token 0, which is what the predictor returns without refinement; for refining models the
    descriptor is defined on this first pass too.
    """
    sam, geometry = model.sam, encoded.geometry
    device = encoded.features.device
    point_arg = box_arg = None
    if points is not None and len(points):
        coords = torch.as_tensor(geometry.points_to_model(np.asarray(points, np.float64)), dtype=torch.float32)
        point_labels = torch.as_tensor(np.ones(len(coords)) if labels is None else labels, dtype=torch.int64)
        point_arg = (coords[None].to(device), point_labels[None].to(device))
    if box is not None:
        box_arg = torch.as_tensor(geometry.boxes_to_model(np.asarray(box, np.float64)), dtype=torch.float32)
        box_arg = box_arg.reshape(1, 4).to(device)
    if point_arg is None and box_arg is None:
        raise ValueError("a prompt needs a box or points")
    sparse, dense = sam.prompt_encoder(points=point_arg, boxes=box_arg, masks=None)
    with capture_decoder_state(sam) as state:
        logits, iou = sam.mask_decoder.predict_masks(encoded.features, sam.prompt_encoder.get_dense_pe(), sparse, dense)
    conditioned = state.conditioned[0]
    side = math.isqrt(conditioned.shape[0])  # SAM image embeddings are square (64×64)
    conditioned = conditioned.transpose(0, 1).reshape(conditioned.shape[-1], side, side)
    return state.tokens[0, 1], conditioned, logits[0, 0], iou[0, 0]


def describe_prompt(
    model,
    encoded: EncodedImage,
    box: np.ndarray | None = None,
    points: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> tuple[Tensor, bool]:
    """The descriptor of one prompt on an encoded image, and whether its predicted mask was empty."""
    mask_token, conditioned, logits, _ = decode_prompt(model, encoded, box, points, labels)
    return build_descriptor(mask_token, conditioned, logits, encoded.image_descriptor, valid_fraction(encoded.geometry))


# --------------------------------------------------------------------------- head
class Standardize(nn.Module):
    """``(x - mean) / std`` with the training set's statistics, stored with the weights."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def mlp_head(
    in_dim: int, num_classes: int, hidden: Sequence[int] = (), dropout: float = 0.0, standardize: bool = False
) -> nn.Sequential:
    """Linear (``hidden=()``) or MLP head; the same builder for training and for loading a file."""
    layers: list[nn.Module] = [Standardize(in_dim) if standardize else nn.Identity()]
    width = in_dim
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def scores_to_probabilities(scores: Tensor) -> Tensor:
    """Per-class sigmoid scores of a multi-label head, normalised to sum to one."""
    scores = scores.clamp_min(1e-12)
    return scores / scores.sum(dim=-1, keepdim=True)


def format_label(label: str, probabilities: dict[str, float]) -> str:
    """``"malignant 0.82"``: the label and its probability, as the CLI and the Slicer module show it."""
    return f"{label} {probabilities[label]:.2f}"


@dataclass
class PromptClassifier:
    """A trained prompt classifier. **Research benchmark, not a diagnosis** (see :data:`NOTICE`).

    ``model``: the identity (``{"family", "digest"}``, see :func:`model_identity`) of the SAM model
    whose descriptors it was trained on, or None for a file that does not record it.
    """

    head: nn.Sequential
    classes: list[str]
    layout: dict[str, int]
    meta: dict = field(default_factory=dict)
    notice: str = NOTICE
    model: dict | None = None
    source: str = ""
    _checked: "weakref.WeakSet" = field(default_factory=weakref.WeakSet, repr=False, compare=False)

    def check_model(self, model) -> None:
        """Refuse (:class:`ClassifierError`) any model but the one this classifier was trained on.

        The digest covers every SAM tensor, so a fine-tuned or other-family model with the same
        descriptor size (LiteMedSAM vs UltraSam-Lite: both 832 values) is refused too. A file without
        the record is refused as well: nothing else could tell a wrong pairing, whose probabilities
        look just as confident (re-export it with ``ultrasam downstream prompted``, which records it).
        Each model object is digested once.
        """
        if model.sam in self._checked:
            return
        name = self.source or "this classifier"
        if not self.model or not self.model.get("digest"):
            raise ClassifierError(
                f"{name} does not record the model it was trained on, so it cannot be checked against "
                f"{model.spec.family} ({model.source or 'in memory'}); re-export it with `ultrasam downstream prompted`"
            )
        actual = model_identity(model)
        expected = self.model
        if actual["digest"] != expected["digest"] or actual["family"] != expected.get("family", actual["family"]):
            trained = f"{expected.get('family', '?')} {expected['digest']}"
            trained += f" ({expected['source']})" if expected.get("source") else ""
            raise ClassifierError(
                f"{name} was trained on the {trained} model, not on the model in use, "
                f"{actual['family']} {actual['digest']} ({model.source or 'in memory'}): "
                "use the model it was trained on, or train a classifier for this one"
            )
        self._checked.add(model.sam)

    @torch.inference_mode()
    def classify_descriptor(self, descriptor: Tensor) -> tuple[str, dict[str, float]]:
        """(label, {class: probability}) for one descriptor."""
        expected = sum(self.layout.values())
        if descriptor.numel() != expected:
            raise ValueError(
                f"descriptor has {descriptor.numel()} values, this classifier takes {expected} "
                f"({self.layout}): was it made with another model?"
            )
        descriptor = descriptor.detach().float().flatten()[None].cpu()  # heads are loaded on the CPU
        probabilities = scores_to_probabilities(torch.sigmoid(self.head(descriptor)))[0]
        values = {name: float(p) for name, p in zip(self.classes, probabilities)}
        return max(values, key=values.get), values

    def classify(
        self,
        mask_token: Tensor,
        conditioned: Tensor,
        low_res_logits: Tensor,
        image_features: Tensor,
        valid: Sequence[float] | None = None,
    ) -> tuple[str, dict[str, float]]:
        """(label, probabilities) from one prompt's model outputs (see :func:`build_descriptor`)."""
        descriptor, _ = build_descriptor(mask_token, conditioned, low_res_logits, image_features, valid)
        return self.classify_descriptor(descriptor)

    def classify_prompt(
        self,
        model,
        encoded: EncodedImage,
        box: np.ndarray | None = None,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
    ) -> tuple[str, dict[str, float]]:
        """(label, probabilities) of one prompt on an image encoded by :func:`encode_image` (decoder only).

        Does not check ``model`` (call :meth:`check_model` once, as ``Predictor.attach_classifier`` does).
        """
        descriptor, _ = describe_prompt(model, encoded, box, points, labels)
        return self.classify_descriptor(descriptor)

    def classify_image(
        self,
        model,
        image: np.ndarray,
        box: np.ndarray | None = None,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
    ) -> tuple[str, dict[str, float]]:
        """(label, probabilities) of one prompt on a raw image (encodes it; see :meth:`classify_prompt`)."""
        return self.classify_prompt(model, encode_image(model, image), box, points, labels)


def save_prompt_classifier(
    path: str | Path,
    head: nn.Sequential,
    classes: Sequence[str],
    layout: dict[str, int],
    hidden: Sequence[int],
    meta: dict | None = None,
    model: dict | None = None,
) -> Path:
    """Write ``head`` as safetensors with the header that :func:`load_prompt_classifier` needs.

    ``model``: the identity of the SAM model the descriptors came from (:func:`model_identity`, or a
    dict with ``family`` and ``digest``, optionally ``source``); a deployed classifier is refused
    on any other model, and one saved without it on every model.
    """
    from safetensors.torch import save_file

    path = Path(path)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "classes": list(classes),
        "layout": dict(layout),
        "hidden": [int(h) for h in hidden],
        "standardize": isinstance(head[0], Standardize),
        "notice": NOTICE,
        "model": None if model is None else {k: str(v) for k, v in dict(model).items()},
        "meta": dict(meta or {}),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"ultrasam_prompt_classifier": json.dumps(header)})
    tmp.replace(path)
    return path


def _recorded_model(header: dict) -> dict | None:
    """The model record: the header's ``model``, else what files written before it kept in ``meta``."""
    record = header.get("model")
    if isinstance(record, dict) and record.get("digest"):
        return {k: str(v) for k, v in record.items()}
    meta = header.get("meta") or {}
    if meta.get("model_digest") and meta.get("family"):  # every ``ultrasam downstream prompted`` export
        record = {"family": str(meta["family"]), "digest": str(meta["model_digest"])}
        if meta.get("model"):
            record["source"] = str(meta["model"])
        return record
    return None


def load_prompt_classifier(path: str | Path) -> PromptClassifier:
    """A :class:`PromptClassifier` from a file written by :func:`save_prompt_classifier`.

    Raises :class:`ClassifierError` (a ``ValueError``) for a file that is not one (no pickle is ever
    read: safetensors only). The model record is checked when the classifier meets a model
    (:meth:`PromptClassifier.check_model`).
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ClassifierError(f"classifier file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise ClassifierError(f"{path} is not an UltraSam prompt classifier (not a safetensors file: {exc})") from None
    try:
        header = json.loads(metadata["ultrasam_prompt_classifier"])
    except (KeyError, json.JSONDecodeError):
        raise ClassifierError(f"{path} is not an UltraSam prompt classifier (no header)") from None
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ClassifierError(f"{path}: unsupported classifier format {header.get('format')} v{header.get('version')}")
    try:
        layout = {k: int(header["layout"][k]) for k in PARTS}
        head = mlp_head(sum(layout.values()), len(header["classes"]), header["hidden"], standardize=header["standardize"])
        head.load_state_dict(load_file(str(path)), strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ClassifierError(f"{path}: a damaged prompt classifier ({exc})") from None
    head.eval()
    return PromptClassifier(
        head,
        list(header["classes"]),
        layout,
        header.get("meta", {}),
        header.get("notice", NOTICE),
        model=_recorded_model(header),
        source=str(path),
    )
