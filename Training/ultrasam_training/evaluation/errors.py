"""The evaluator's error type, an ``UltraSamError`` so ``ultrasam evaluate`` prints it cleanly."""

from __future__ import annotations

from ultrasam.errors import UltraSamError


class EvaluationError(UltraSamError):
    """An evaluation cannot run as asked: unknown model, unusable prompt kind, unreadable data."""
