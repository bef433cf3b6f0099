"""UltraSam: promptable ultrasound segmentation (SAM family) in plain PyTorch.

The public entry points are :func:`ultrasam.load_model` (any SAM-family checkpoint, layout
detected from its tensors) and :class:`ultrasam.Predictor` (encode once, decode per prompt).
"""

__version__ = "0.1.0"

from ultrasam.errors import UltraSamError, CheckpointError, PromptError, ImageError  # noqa: F401


def __getattr__(name: str):
    # Lazy: importing ``ultrasam`` must stay cheap (Slicer imports it at startup).
    if name == "load_model":
        from ultrasam.models import load_model

        return load_model
    if name == "Predictor":
        from ultrasam.predictor import Predictor

        return Predictor
    raise AttributeError(name)
