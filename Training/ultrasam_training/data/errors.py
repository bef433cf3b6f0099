"""Errors of the data pipeline, all catchable as ``UltraSamError`` so the CLI prints them cleanly."""

from __future__ import annotations

from ultrasam.errors import OutputExistsError, UltraSamError

__all__ = ["DatasetError", "OutputExistsError", "UnknownDatasetError"]


class DatasetError(UltraSamError):
    """Raw data or a COCO file is missing, malformed or inconsistent."""


class UnknownDatasetError(DatasetError):
    """A dataset name is not in the registry, or has no converter yet."""
