"""Atomic JSON reading and writing: an interrupted run never leaves half a COCO file behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ultrasam.atomic import atomic_write

from ultrasam_training.data.errors import DatasetError


def read_json(path: str | Path) -> Any:
    """Read a JSON file, turning I/O and syntax problems into ``DatasetError`` with the path."""
    path = Path(path)
    try:
        with path.open("r", encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError as exc:
        raise DatasetError(f"file not found: {path}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read JSON {path}: {exc}") from exc


def write_json(data: Any, path: str | Path, *, overwrite: bool = False, indent: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (``ultrasam.atomic``), streamed rather than built in memory.

    Refuses to replace an existing file unless ``overwrite`` is true.
    """

    def dump(temporary: Path) -> None:
        with temporary.open("w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=indent)
            handle.write("\n")

    return atomic_write(path, dump, overwrite=overwrite)
