"""Converters from raw dataset layouts to this project's COCO form.

Every converter module exposes ``convert(raw_dir, out_dir, options: ConvertOptions) ->
ConversionReport`` and, when it has dataset-specific options, their defaults as ``OPTIONS``.
``run_converter`` finds one by dataset key through the registry: a new converter only needs its
module, ``convert/<registry key>.py`` (``dataset_105us.py`` for a key that is no Python name),
found by ``DatasetInfo.converter_module``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from ultrasam_training.data.convert.options import ConvertOptions
from ultrasam_training.data.errors import UnknownDatasetError
from ultrasam_training.data.report import ConversionReport

__all__ = ["GENERIC", "ConvertOptions", "converter_module", "run_converter"]
GENERIC = "generic"


def converter_module(name: str) -> ModuleType:
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


def run_converter(
    name: str, raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions | None = None, **keywords: Any
) -> ConversionReport:
    """Convert dataset ``name`` from ``raw_dir`` into ``out_dir``; an option it does not take is an error.

    Give ``options``, or keywords for :meth:`ConvertOptions.from_keywords` (``keep_empty=True``,
    ``test_fold=2``, ...), not both.
    """
    if options is None:
        options = ConvertOptions.from_keywords(**keywords)
    elif keywords:
        raise TypeError("run_converter takes options or keywords, not both")
    module = converter_module(name)
    options.extras(getattr(module, "OPTIONS", {}), name)  # refuse a foreign option before any work
    return module.convert(raw_dir, out_dir, options)
