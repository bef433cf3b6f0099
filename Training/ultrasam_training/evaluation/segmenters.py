"""What the evaluator prompts: a real model behind ``Predictor``, or a trivial GT-box baseline.

Every segmenter answers one prompt with one mask and a score, so real models and the baselines
("filled GT box", "ellipse inscribed in the GT box") sit in the same tables. The baselines take
boxes only; their score is a constant 1.0, so in COCO mAP their predictions tie and keep file order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Protocol

import numpy as np

from ultrasam.models import SamModel
from ultrasam.predictor import Predictor
from ultrasam_training.evaluation.errors import EvaluationError

log = logging.getLogger(__name__)

BASELINES = ("filled-box", "ellipse")


@dataclass
class Segmentation:
    """One mask at original resolution, its score (predicted IoU) and 256² logits when there are any."""

    mask: np.ndarray
    score: float
    logits: np.ndarray | None = None


class Segmenter(Protocol):
    """The evaluator's view of a model. ``prompt_kinds`` lists what it can take (``box``, ``point``)."""

    name: str
    refine: bool | None
    prompt_kinds: frozenset[str]

    def set_image(self, image: np.ndarray, key: Hashable | None = None) -> None: ...

    def segment(
        self,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
    ) -> Segmentation: ...


class ModelSegmenter:
    """A SAM-family model through :class:`ultrasam.predictor.Predictor` (embeddings cached per image)."""

    prompt_kinds = frozenset({"box", "point"})

    def __init__(self, model: SamModel | Predictor, name: str | None = None, refine: bool | None = None) -> None:
        self.predictor = model if isinstance(model, Predictor) else Predictor(model)
        spec = self.predictor.model.spec
        self.name = name or spec.family
        self.refine = spec.refine if refine is None else bool(refine)

    def set_image(self, image: np.ndarray, key: Hashable | None = None) -> None:
        self.predictor.set_image(image, key=key)

    def segment(self, points=None, labels=None, box=None, mask_input=None) -> Segmentation:
        prediction = self.predictor.predict(
            points=points, labels=labels, box=box, mask_input=mask_input, multimask=False, refine=self.refine
        )
        return Segmentation(mask=prediction.mask, score=prediction.score, logits=prediction.logits)


class _BoxBaseline:
    """A GT-box-only predictor; subclasses say which pixels of the box are foreground."""

    prompt_kinds = frozenset({"box"})
    refine = None
    name = "baseline"

    def __init__(self) -> None:
        self._shape: tuple[int, int] | None = None

    def set_image(self, image: np.ndarray, key: Hashable | None = None) -> None:
        self._shape = tuple(np.shape(image)[:2])

    def segment(self, points=None, labels=None, box=None, mask_input=None) -> Segmentation:
        if self._shape is None:
            raise EvaluationError(f"{self.name}: no image set")
        if box is None or points is not None:
            raise EvaluationError(f"the {self.name} baseline takes a box prompt only")
        x0, y0, x1, y1 = (float(v) for v in np.asarray(box, np.float64).reshape(4))
        rows = np.arange(self._shape[0])[:, None] + 0.5  # pixel centres in COCO's edge coordinates
        cols = np.arange(self._shape[1])[None, :] + 0.5
        return Segmentation(mask=self._inside(rows, cols, x0, y0, x1, y1), score=1.0)

    def _inside(self, rows, cols, x0, y0, x1, y1) -> np.ndarray:
        raise NotImplementedError


class FilledBoxBaseline(_BoxBaseline):
    """Every pixel whose centre lies in the GT box: what a box prompt gives with no model at all."""

    name = "filled-box"

    def _inside(self, rows, cols, x0, y0, x1, y1) -> np.ndarray:
        return (cols >= x0) & (cols < x1) & (rows >= y0) & (rows < y1)


class EllipseBaseline(_BoxBaseline):
    """The ellipse inscribed in the GT box (pixel centres inside it), a strong prior for round lesions."""

    name = "ellipse"

    def _inside(self, rows, cols, x0, y0, x1, y1) -> np.ndarray:
        cx, cy, ax, ay = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        return ((cols - cx) / ax) ** 2 + ((rows - cy) / ay) ** 2 <= 1.0


_BASELINE_CLASSES = {"filled-box": FilledBoxBaseline, "ellipse": EllipseBaseline}


def load_segmenter(
    model_or_checkpoint: "Segmenter | SamModel | Predictor | str | Path",
    *,
    family: str | None = None,
    refine: bool | None = None,
    device: str = "auto",
    name: str | None = None,
) -> Segmenter:
    """A segmenter from a model object, a baseline name, a weights name or a checkpoint path.

    Strings are tried in that order: ``filled-box``/``ellipse``; a registered weights name
    (``litemedsam``, ``ultrasam``, ``sam_vit_b``, ...; fetched into the cache); a checkpoint file.
    """
    if isinstance(model_or_checkpoint, (SamModel, Predictor)):
        return ModelSegmenter(model_or_checkpoint, name=name, refine=refine)
    if not isinstance(model_or_checkpoint, (str, Path)):
        if hasattr(model_or_checkpoint, "segment") and hasattr(model_or_checkpoint, "set_image"):
            return model_or_checkpoint
        raise EvaluationError(f"cannot evaluate a {type(model_or_checkpoint).__name__}")
    from ultrasam import weights
    from ultrasam.models import open_model

    text = str(model_or_checkpoint)
    if text in _BASELINE_CLASSES:
        return _BASELINE_CLASSES[text]()
    path = Path(text).expanduser()
    if not path.is_file() and text not in {e.name for e in weights.list_weights()}:
        known = ", ".join(BASELINES + tuple(e.name for e in weights.list_weights()))
        raise EvaluationError(f"{text!r} is neither a checkpoint file nor a known model; known models: {known}")
    model = open_model(text, family=family, device=device)  # files include mmengine iter_N.pth
    return ModelSegmenter(model, name=name or (path.stem if path.is_file() else text), refine=refine)
