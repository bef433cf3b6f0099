"""Converters from raw dataset layouts to this project's COCO form.

Every converter module exposes ``convert(raw_dir, out_dir, *, image_mode="copy", overwrite=False,
progress=True, ...) -> ConversionReport``. ``run_converter`` finds one by dataset key through the
registry: a new converter only needs its module, ``convert/<registry key>.py`` (``dataset_105us.py``
for a key that is no Python name), found by ``DatasetInfo.converter_module``.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from ultrasam_training.data.errors import DatasetError, UnknownDatasetError
from ultrasam_training.data.report import ConversionReport

GENERIC = "generic"


def converter_module(name: str):
    """The converter module of a registry key (or ``generic``)."""
    from ultrasam_training.data import registry

    if name == GENERIC:
        return importlib.import_module("ultrasam_training.data.convert.generic")
    info = registry.get(name)
    if info.converter_module is None:
        raise UnknownDatasetError(
            f"{info.name}: no converter yet; use 'generic' if it is image + mask folders "
            f"(expected raw layout: {info.raw_layout})"
        )
    return importlib.import_module(info.converter_module)


def run_converter(name: str, raw_dir: str | Path, out_dir: str | Path, **options: Any) -> ConversionReport:
    """Convert dataset ``name`` from ``raw_dir`` into ``out_dir``; unknown options are an error."""
    module = converter_module(name)
    accepted = inspect.signature(module.convert).parameters
    unknown = sorted(key for key in options if key not in accepted)
    if unknown:
        raise DatasetError(f"converter {name!r} does not take option(s) {', '.join(unknown)}")
    if name == GENERIC and "dataset" not in options:
        options["dataset"] = GENERIC
    return module.convert(raw_dir, out_dir, **options)
