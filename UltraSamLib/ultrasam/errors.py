"""Exception types: one base class so front ends can show any library failure clearly."""


class UltraSamError(Exception):
    """Base class of every error the library raises on bad input."""


class CheckpointError(UltraSamError):
    """A checkpoint file is missing, truncated, foreign or does not match the model."""


class ImageError(UltraSamError):
    """An image cannot be used as model input (NaN, wrong shape, zero size...)."""


class PromptError(UltraSamError):
    """A prompt is outside the image, degenerate, or otherwise unusable."""


class WeightsError(UltraSamError):
    """Weights cannot be found, downloaded or verified."""


class OutputExistsError(UltraSamError):
    """An output file exists and overwriting was not requested."""
