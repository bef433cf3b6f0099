"""The US-43d datasets UltraSam was trained on: where they come from and how to convert them.

The facts live in ``catalogue.py`` (one ``DatasetInfo`` per dataset); this module looks them up.
Converter mechanics follow the protocol notes (§7.2) of the released UltraSam code; a field that
could not be checked against a public source says ``"unknown"``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field

from ultrasam_training.data.errors import UnknownDatasetError

UNKNOWN = "unknown"


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset of US-43d."""

    key: str  #: short id used in file names (``<key>__00000.png``) and on the command line
    name: str  #: name as the UltraSam paper lists it
    url: str
    licence: str
    raw_layout: str  #: what the downloaded archive looks like, as the converter expects it
    organ: str
    application: str
    official_splits: str  #: splits published with the data ("none" if none)
    classes: tuple[str, ...]  #: category names (instance masks); image-level labels are in notes
    dimensionality: str  #: "2D", "2D+t", "3D" or "video"
    converter: str | None = None  #: module implementing ``convert`` (default: :func:`default_converter_module`)
    aliases: tuple[str, ...] = field(default=())  #: other names/folder names that mean this dataset
    notes: str = ""

    def to_dict(self) -> dict:
        return {**asdict(self), "converter": self.converter_module}

    @property
    def converter_module(self) -> str | None:
        """The module that converts this dataset, or None while there is none."""
        module = self.converter or default_converter_module(self.key)
        return module if importlib.util.find_spec(module) is not None else None


def default_converter_module(key: str) -> str:
    """``ultrasam_training.data.convert.<key>`` (``dataset_<key>`` when the key is no identifier, e.g. 105us)."""
    return f"ultrasam_training.data.convert.{key if key.isidentifier() else 'dataset_' + key}"


def all_datasets() -> tuple[DatasetInfo, ...]:
    """Every registered dataset, in the paper's alphabetical order."""
    from ultrasam_training.data.catalogue import DATASETS

    return DATASETS


def _normal(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def get(name: str) -> DatasetInfo:
    """Look a dataset up by key, name or alias (case and punctuation ignored)."""
    wanted = _normal(name)
    for info in all_datasets():
        if wanted in {_normal(info.key), _normal(info.name), *(_normal(a) for a in info.aliases)}:
            return info
    known = ", ".join(info.key for info in all_datasets())
    raise UnknownDatasetError(f"unknown dataset {name!r}; known: {known}")


def with_converter() -> tuple[DatasetInfo, ...]:
    """The datasets that can be converted today."""
    return tuple(info for info in all_datasets() if info.converter_module)


def organ_of(key: str) -> str:
    """Organ of a dataset key, ``"unknown"`` for datasets outside the registry (e.g. generic ones)."""
    try:
        return get(key).organ
    except UnknownDatasetError:
        return UNKNOWN
