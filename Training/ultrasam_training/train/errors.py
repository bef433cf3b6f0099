"""Errors of the training pipeline, catchable as ``UltraSamError`` so the CLI prints them cleanly."""

from __future__ import annotations

from ultrasam.errors import UltraSamError

__all__ = ["TrainingError"]


class TrainingError(UltraSamError):
    """A training configuration, checkpoint or dataset cannot be used as asked."""
