"""Atomic, no-clobber file writing: an output is either complete or absent, never half-written.

Every writer renders into a hidden temporary file in the destination folder (same file system,
and a name ending in the destination's own name so extension-driven writers such as SimpleITK
choose the same format), then moves it into place. Without ``overwrite`` the move is a hard
link, which fails if the destination appeared in the meantime, so an existing file is never
replaced even by a racing writer.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable

from ultrasam.errors import OutputExistsError


def refuse_existing(path: Path) -> None:
    """Raise :class:`OutputExistsError` naming the file and how to replace it."""
    raise OutputExistsError(f"output {path} already exists; pass overwrite=True (CLI: --overwrite) to replace it")


def atomic_write(path: str | Path, write: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Call ``write(temporary_path)`` and move the result to ``path`` atomically.

    Parent folders are created. On any error the temporary file is removed and ``path`` is
    left exactly as it was.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        refuse_existing(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".tmp-{uuid.uuid4().hex[:12]}-{path.name}"
    try:
        write(temporary)
        if not temporary.exists():
            raise OSError(f"writer produced no file for {path}")
        if overwrite:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError:
                refuse_existing(path)
            except OSError:  # a file system without hard links: check, then rename
                if path.exists():
                    refuse_existing(path)
                os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_bytes_atomic(path: str | Path, data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), overwrite=overwrite)


def write_text_atomic(path: str | Path, text: str, overwrite: bool = False) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return write_bytes_atomic(path, text.encode("utf-8"), overwrite=overwrite)
