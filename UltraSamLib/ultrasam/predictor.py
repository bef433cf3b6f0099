"""Encode an image once, then answer any number of prompts with the decoder alone.

Coordinates are original-image pixels: a point ``(x, y)`` names column ``x``, row ``y``; a box
is ``[x0, y0, x1, y1]`` with an exclusive max corner (COCO ``[x, y, x + w, y + h]``).

With refinement (the UltraSam recipe, default for the ``ultrasam`` family) the decoder runs
twice: pass 1 single-mask; pass 2 multimask with pass 1's logits as the mask prompt, a point
prompt replaced by the box of pass 1's mask (negative points are kept: the original had none),
and the mask with the highest predicted IoU selected.

With a prompt classifier attached (:meth:`Predictor.attach_classifier`, see
:mod:`ultrasam.classifier`; **a research benchmark, not a diagnosis**) each embedding keeps the
pooled image descriptor read from the same encoder pass, and :meth:`Predictor.predict` also gives
each prompt's class (``Prediction.label``, ``Prediction.probabilities``) from one more
single-mask decoder pass, exactly ``PromptClassifier.classify_prompt``. Without one nothing extra
is computed or kept.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Hashable

import numpy as np
import torch

from ultrasam import decoder_cache
from ultrasam.embedding_store import EmbeddingStore
from ultrasam.errors import ImageError, PromptError, UltraSamError
from ultrasam.models import SamModel
from ultrasam.prompts import validate_boxes, validate_points
from ultrasam.transforms import InputGeometry, mask_to_box, masks_to_original, prepare_input, to_rgb_uint8

if TYPE_CHECKING:
    from pathlib import Path

    from ultrasam.classifier import PromptClassifier


@dataclass
class DecoderPass:
    """One decoder pass of a refined prediction, kept for inspection and fidelity tests.

    Coordinates are those the positional encoding sees: model pixels with SAM's +0.5 included.
    """

    low_res_logits: np.ndarray
    iou: np.ndarray
    points: np.ndarray | None
    boxes: np.ndarray | None


@dataclass
class Prediction:
    """Masks at original resolution, predicted IoU and 256² logits, batch first: ``(B, K, ...)``.

    With a classifier attached, ``labels`` / ``class_probabilities`` hold each prompt's class and
    ``{class: probability}`` (research benchmark, not a diagnosis); None otherwise.
    """

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray
    passes: list[DecoderPass] = field(default_factory=list)
    labels: list[str] | None = None
    class_probabilities: list[dict[str, float]] | None = None

    @property
    def label(self) -> str | None:
        """The first prompt's class (a classifier attached), else None. Not a diagnosis."""
        return None if self.labels is None else self.labels[0]

    @property
    def probabilities(self) -> dict[str, float] | None:
        """The first prompt's ``{class: probability}`` (a classifier attached), else None."""
        return None if self.class_probabilities is None else self.class_probabilities[0]

    @property
    def best_index(self) -> int:
        return int(np.argmax(self.scores[0]))

    @property
    def mask(self) -> np.ndarray:
        """The first prompt's best mask, ``(H, W)`` bool."""
        return self.masks[0, self.best_index]

    @property
    def score(self) -> float:
        return float(self.scores[0, self.best_index])

    @property
    def logits(self) -> np.ndarray:
        """Low-res logits of :attr:`mask`; pass ``logits[None]`` back as ``mask_input``."""
        return self.low_res_logits[0, self.best_index]


@dataclass
class _Embedding:
    features: torch.Tensor
    geometry: InputGeometry
    side: decoder_cache.ImageSide | None = None  # prompt-independent decoder terms, made on first use
    image_descriptor: torch.Tensor | None = None  # pooled pre-neck map, kept only for a classifier

    def image_side(self, sam: torch.nn.Module, pe: torch.Tensor) -> decoder_cache.ImageSide:
        if self.side is None:
            self.side = decoder_cache.image_side(sam, self.features, pe=pe)
        return self.side


class Predictor:
    """A ``SamPredictor``-like front end that works for every family in :mod:`ultrasam.models`."""

    def __init__(
        self,
        model: SamModel,
        cache_size: int = 8,
        *,
        store: EmbeddingStore | None = None,
        classifier: "PromptClassifier | str | Path | None" = None,
        fast_decoder: bool = True,
    ) -> None:
        """``store``: embeddings shared with other predictors of the same model (e.g. a background
        encoder thread); without one the predictor keeps its own of ``cache_size`` entries.
        ``classifier``: see :meth:`attach_classifier`. ``fast_decoder=False`` runs
        ``segment_anything``'s ``MaskDecoder`` module itself (the reference for benchmarks and
        tests) instead of :mod:`ultrasam.decoder_cache`'s equivalent."""
        self.model = model
        self.store = store if store is not None else EmbeddingStore(cache_size)
        self.encoded = 0  # images this predictor had to encode itself (the rest came from the store)
        self._current: _Embedding | None = None
        self._cached_decoder = fast_decoder and decoder_cache.supports(model.sam)  # image terms once per image
        self._dense_pe: torch.Tensor | None = None  # the decoder's positional encoding: one per model
        self.classifier: "PromptClassifier | None" = None
        if classifier is not None:
            self.attach_classifier(classifier)

    def attach_classifier(self, classifier: "PromptClassifier | str | Path | None") -> "PromptClassifier | None":
        """Classify every prompt :meth:`predict` answers (None detaches); returns the classifier.

        ``classifier``: a :class:`~ultrasam.classifier.PromptClassifier` or its ``.safetensors``
        file. It must have been trained on this very model (family and weights digest), else
        :class:`~ultrasam.classifier.ClassifierError` names both. **Research benchmark, not a
        diagnosis.** Embeddings already stored without the image descriptor are encoded again
        when next set.
        """
        if classifier is None:
            self.classifier = None
            return None
        from ultrasam.classifier import PromptClassifier, load_prompt_classifier

        if not isinstance(classifier, PromptClassifier):
            classifier = load_prompt_classifier(classifier)
        classifier.check_model(self.model)
        self.classifier = classifier
        return classifier

    # ------------------------------------------------------------------ image
    @property
    def device(self) -> torch.device:
        return self.model.device

    def set_image(
        self, image: np.ndarray, key: Hashable | None = None, window: tuple[float, float] | None = None
    ) -> None:
        """Make ``image`` current, encoding it unless its embedding is in the store.

        ``key`` names the image for the store (e.g. ``(volume_id, axis, slice)``), so a keyed image
        found there is not even converted; without one the content hash is used, so the same pixels
        are never encoded twice.
        """
        rgb = None
        if key is None:
            rgb = to_rgb_uint8(image, window)
            key = self._content_key(rgb)
        embedding = self.store.get(key, window)
        if embedding is None or (self.classifier is not None and embedding.image_descriptor is None):
            embedding = self._encode(rgb if rgb is not None else to_rgb_uint8(image, window))
            self.encoded += 1
            self.store.put(key, embedding, window)
        self._current = embedding

    def set_embedding(
        self, features: torch.Tensor, original_hw: tuple[int, int], image_descriptor: torch.Tensor | None = None
    ) -> None:
        """Use a precomputed embedding (e.g. from a batched encoder run); ``image_descriptor``: its
        pooled pre-neck map (``ultrasam.classifier.encode_features``), needed to classify prompts."""
        from ultrasam.transforms import resized_shape

        spec = self.model.spec
        geometry = InputGeometry(tuple(original_hw), resized_shape(*original_hw, spec), spec.image_size)
        self._current = _Embedding(features.to(self.device), geometry, image_descriptor=image_descriptor)

    @property
    def embedding(self) -> torch.Tensor:
        return self._require_image().features

    @property
    def geometry(self) -> InputGeometry:
        return self._require_image().geometry

    def is_cached(self, key: Hashable, window: tuple[float, float] | None = None) -> bool:
        return self.store.contains(key, window)

    @staticmethod
    def _content_key(rgb: np.ndarray) -> str:
        digest = hashlib.blake2b(rgb.tobytes(), digest_size=16)
        digest.update(repr(rgb.shape).encode())
        return "sha:" + digest.hexdigest()

    @torch.inference_mode()
    def _encode(self, rgb: np.ndarray) -> _Embedding:
        tensor, geometry = prepare_input(rgb, self.model.spec, self.device)
        if self.classifier is None:
            return _Embedding(self.model.sam.image_encoder(tensor), geometry)
        from ultrasam.classifier import encode_features

        features, descriptor = encode_features(self.model.sam, tensor, geometry)  # the same single pass
        return _Embedding(features, geometry, image_descriptor=descriptor)

    def _require_image(self) -> _Embedding:
        if self._current is None:
            raise ImageError("no image set: call set_image() first")
        return self._current

    # ------------------------------------------------------------------ prompts
    def predict(
        self,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = False,
        refine: bool | None = None,
        classify: bool | None = None,
    ) -> Prediction:
        """Masks for the prompts; ``box`` may be ``(B, 4)`` to segment B objects in one batch.

        ``classify`` (default: whether a classifier is attached) also gives each prompt's class from
        its points and box (``mask_input`` is not part of the classifier's descriptor)."""
        current = self._require_image()
        spec = self.model.spec
        refine = spec.refine if refine is None else refine
        if refine and not spec.mask_prompt:
            raise PromptError("this checkpoint has no mask-prompt encoder, so refinement is unavailable")
        coords, point_labels, boxes = self._check_prompts(points, labels, box, current.geometry.original_hw)
        mask_tensor = None
        if mask_input is not None:
            mask_tensor = torch.as_tensor(np.asarray(mask_input, np.float32), device=self.device)
            if mask_tensor.ndim == 3:
                mask_tensor = mask_tensor[:, None]
        with torch.inference_mode():
            passes: list[DecoderPass] = []
            if not refine:
                logits, iou = self._decode(current, coords, point_labels, boxes, mask_tensor, multimask)
                masks = masks_to_original(logits, current.geometry, spec)
            else:
                logits, iou, masks = self._refined(current, coords, point_labels, boxes, mask_tensor, multimask, passes)
        prediction = Prediction(
            masks=masks.cpu().numpy(),
            scores=iou.float().cpu().numpy(),
            low_res_logits=logits.float().cpu().numpy(),
            passes=passes,
        )
        if self.classifier is not None and classify is not False:
            prediction.labels, prediction.class_probabilities = self._classify(current, coords, point_labels, boxes)
        elif classify:
            raise UltraSamError("no classifier attached: call attach_classifier() first")
        return prediction

    def _classify(self, current: _Embedding, coords, point_labels, boxes) -> tuple[list[str], list[dict]]:
        """Each prompt's class: ``PromptClassifier.classify_prompt`` on the cached embedding."""
        from ultrasam.classifier import EncodedImage

        if current.image_descriptor is None:
            raise UltraSamError(
                "this embedding has no image descriptor for the classifier: set the image with set_image() "
                "(or pass image_descriptor to set_embedding())"
            )
        encoded = EncodedImage(current.features, current.image_descriptor, current.geometry)
        count = (boxes if boxes is not None else coords).shape[0]
        labels, probabilities = [], []
        for b in range(count):
            label, values = self.classifier.classify_prompt(
                self.model,
                encoded,
                box=None if boxes is None else boxes[b],
                points=None if coords is None else coords[b],
                labels=None if point_labels is None else point_labels[b],
            )
            labels.append(label)
            probabilities.append(values)
        return labels, probabilities

    def _refined(self, current, coords, point_labels, boxes, mask_tensor, multimask, passes):
        geometry = current.geometry
        coords_m = None if coords is None else geometry.points_to_model(coords)
        boxes_m = None if boxes is None else geometry.boxes_to_model(boxes)
        logits1, iou1 = self._decode_model_coords(
            current, coords_m, point_labels, boxes_m, mask_tensor, multimask=False
        )
        passes.append(_record(logits1, iou1, coords_m, boxes_m))
        if boxes is None:  # UltraSam: a point prompt becomes the box of the pass-1 mask
            masks1 = masks_to_original(logits1, geometry, self.model.spec).cpu().numpy()
            derived = [mask_to_box(m[0]) for m in masks1]
            if all(b is not None for b in derived):  # an empty pass-1 mask keeps its points
                boxes_m = geometry.boxes_to_model(np.stack(derived)) - 0.5  # the original adds no +0.5 here
                coords_m, point_labels = _negatives_only(coords_m, point_labels)
        logits2, iou2 = self._decode_model_coords(current, coords_m, point_labels, boxes_m, logits1, multimask=True)
        passes.append(_record(logits2, iou2, coords_m, boxes_m))
        if not multimask:
            best = iou2.argmax(dim=1)
            index = torch.arange(logits2.shape[0], device=logits2.device)
            logits2, iou2 = logits2[index, best][:, None], iou2[index, best][:, None]
        return logits2, iou2, masks_to_original(logits2, geometry, self.model.spec)

    def _decode(self, current, coords, point_labels, boxes, mask_tensor, multimask):
        geometry = current.geometry
        coords_model = None if coords is None else geometry.points_to_model(coords)
        boxes_model = None if boxes is None else geometry.boxes_to_model(boxes)
        return self._decode_model_coords(current, coords_model, point_labels, boxes_model, mask_tensor, multimask)

    def _decode_model_coords(self, current, coords, point_labels, boxes, mask_tensor, multimask):
        sam = self.model.sam
        device = self.device
        point_arg = None
        if coords is not None:
            point_arg = (
                torch.as_tensor(coords, dtype=torch.float32, device=device),
                torch.as_tensor(point_labels, dtype=torch.int64, device=device),
            )
        box_arg = None if boxes is None else torch.as_tensor(boxes, dtype=torch.float32, device=device)
        sparse, dense = sam.prompt_encoder(points=point_arg, boxes=box_arg, masks=mask_tensor)
        if self._cached_decoder and current.features.shape[0] == 1:
            if self._dense_pe is None or self._dense_pe.device != current.features.device:  # a moved model
                self._dense_pe = decoder_cache.dense_pe(sam)
            if mask_tensor is None:
                side = current.image_side(sam, self._dense_pe)
            else:  # the dense embedding is this prompt's own: nothing per image is reused but the PE
                side = decoder_cache.image_side(sam, current.features, dense, pe=self._dense_pe)
            return decoder_cache.decode(sam, side, sparse, multimask)
        logits, iou = sam.mask_decoder(
            image_embeddings=current.features,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        return logits, iou

    @staticmethod
    def _check_prompts(points, labels, box, original_hw):
        """Prompts under :mod:`ultrasam.prompts`' rule (the one every :class:`FramePrompts` obeys) in
        original pixels: batched ``(B, N, 2)``, ``(B, N)``, ``(B, 4)``, boxes clipped to the image.

        Zero points count as none; the caller's arrays are only read.
        """
        boxes = None if box is None else validate_boxes(box, original_hw)
        coords, point_labels = (None, None) if points is None else _check_points(points, labels, original_hw)
        if coords is not None and boxes is not None and coords.shape[0] != boxes.shape[0]:
            if coords.shape[0] != 1:
                raise PromptError("with several boxes, give one point set per box or one shared set")
            coords = np.repeat(coords, boxes.shape[0], axis=0)
            point_labels = np.repeat(point_labels, boxes.shape[0], axis=0)
        if coords is None and boxes is None:
            raise PromptError("give at least one point or a box")
        return coords, point_labels, boxes


def _check_points(points, labels, original_hw: tuple[int, int]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(B, N, 2)`` points and ``(B, N)`` labels from one ``(N, 2)`` set or B sets ``(B, N, 2)``, each
    set under the prompt rule; ``(None, None)`` for zero points."""
    if np.ndim(points) != 3:
        sets = [validate_points(points, labels, original_hw)]
    else:
        if labels is not None and np.shape(labels)[:1] != (len(points),):
            raise PromptError(f"labels shape {np.shape(labels)} does not match points shape {np.shape(points)}")
        per_set = [None] * len(points) if labels is None else labels
        sets = [
            validate_points(p, q, original_hw, f"point set {b + 1}") for b, (p, q) in enumerate(zip(points, per_set))
        ]
    if not sets or sets[0][0].shape[0] == 0:
        return None, None
    return np.stack([xy for xy, _ in sets]), np.stack([lab for _, lab in sets])


def _negatives_only(coords: np.ndarray | None, labels: np.ndarray | None):
    """Keep each prompt's negative points, padded with SAM's 'not a point' label (-1)."""
    if coords is None:
        return None, None
    kept = [coords[b][labels[b] == 0] for b in range(coords.shape[0])]
    count = max(len(k) for k in kept)
    if count == 0:
        return None, None
    out_coords = np.zeros((coords.shape[0], count, 2))
    out_labels = -np.ones((coords.shape[0], count), np.int64)
    for b, pts in enumerate(kept):
        out_coords[b, : len(pts)] = pts
        out_labels[b, : len(pts)] = 0
    return out_coords, out_labels


def _record(
    logits: torch.Tensor, iou: torch.Tensor, coords: np.ndarray | None, boxes: np.ndarray | None
) -> DecoderPass:
    return DecoderPass(
        low_res_logits=logits.float().cpu().numpy(),
        iou=iou.float().cpu().numpy(),
        points=None if coords is None else coords + 0.5,
        boxes=None if boxes is None else boxes + 0.5,
    )
