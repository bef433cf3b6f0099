"""Atomic, no-clobber file writing: an output is either complete or absent, never half-written.

Every writer renders into a hidden temporary file in the destination folder (same file system,
and a name ending in the destination's own name so extension-driven writers such as SimpleITK
choose the same format), then moves it into place. Without ``overwrite`` the move is a hard
link, which fails if the destination appeared in the meantime, so an existing file is never
replaced even by a racing writer.

Temporary files are named ``.tmp-<pid>-<hex>-<name>`` (``pid``: the writing process). A writer
killed outright (``kill -9``, power loss) cannot remove its own, so every write first sweeps the
destination folder for temporaries *of the same destination name* (one folder scan serves a
minute of writes) and removes

* those whose writer is gone: its pid no longer exists on this machine and the file has been
  untouched for :data:`DEAD_WRITER_GRACE_S` seconds (the grace spares a live writer on another
  machine sharing the folder, whose pid means nothing here);
* legacy pid-less ones (``.tmp-<hex>-<name>``, earlier versions) untouched for
  :data:`STALE_AFTER_S` seconds.

A file whose pid is alive is never taken (if the pid was reused, the file goes once that process
ends). The same names serve the probe of :func:`probe_writable` and the backups of
:func:`all_or_nothing`, so their leftovers are swept by the same rule.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from ultrasam.errors import OutputExistsError, UltraSamError

STALE_AFTER_S = 3600.0
DEAD_WRITER_GRACE_S = 60.0
SCAN_REUSE_S = 60.0
_SCANS: dict[str, tuple[float, dict[str, list[tuple[str, str | None]]]]] = {}
_TEMP_NAME = re.compile(r"\.tmp-(?:(?P<pid>\d{1,10})-)?[0-9a-f]{12}-(?P<name>.+)", re.DOTALL)


class UnwritableOutputError(UltraSamError):
    """An output cannot be written where it was asked for (checked before any work is done)."""


def refuse_existing(path: Path) -> None:
    """Raise :class:`OutputExistsError` naming the file and how to replace it."""
    raise OutputExistsError(f"output {path} already exists; pass overwrite=True (CLI: --overwrite) to replace it")


def temporary_path(path: Path) -> Path:
    """Where :func:`atomic_write` renders ``path``: hidden, beside it, named after this process."""
    return path.parent / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}-{path.name}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (without signalling it)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (OverflowError, OSError):
        return False
    return True


def _windows_pid_alive(pid: int) -> bool:
    """``os.kill(pid, 0)`` would terminate the process on Windows: ask the kernel instead."""
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return kernel32.GetLastError() == 5  # ERROR_ACCESS_DENIED: exists, not ours
    try:
        code = ctypes.c_ulong()
        return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def _is_stale(path: str, pid: str | None, now: float) -> bool:
    """The sweep rule of the module docstring for one temporary file."""
    status = os.lstat(path)
    if not stat.S_ISREG(status.st_mode):
        return False
    age = now - status.st_mtime
    if pid is None:
        return age >= STALE_AFTER_S
    return int(pid) != os.getpid() and age >= DEAD_WRITER_GRACE_S and not pid_alive(int(pid))


def _temporaries_by_name(folder: Path) -> dict[str, list[tuple[str, str | None]]]:
    """Temporaries in ``folder`` grouped by destination name: (path, pid or None).

    One scan serves every write into the folder for :data:`SCAN_REUSE_S` seconds, so writing
    n files into one folder stays O(n), not O(n^2) (a dataset folder holds 10^5 images).
    """
    key = str(folder)
    now = time.monotonic()
    cached = _SCANS.get(key)
    if cached is not None and now - cached[0] < SCAN_REUSE_S:
        return cached[1]
    index: dict[str, list[tuple[str, str | None]]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            match = _TEMP_NAME.fullmatch(entry.name)
            if match:
                index.setdefault(match["name"], []).append((entry.path, match["pid"]))
    _SCANS[key] = (now, index)
    return index


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove leftover temporaries of ``path`` from killed writers; best effort, returns what went."""
    path = Path(path)
    removed: list[Path] = []
    try:
        candidates = _temporaries_by_name(path.parent).pop(path.name, [])
    except OSError:
        return removed
    now = time.time()
    for candidate, pid in candidates:
        try:
            if _is_stale(candidate, pid, now):
                os.unlink(candidate)
                removed.append(Path(candidate))
        except OSError:
            continue  # gone already, or not ours to remove: never fail a write over a sweep
    return removed


def _nearest_existing_folder(path: Path) -> Path:
    """The folder that must accept a new entry for ``path``: its parent, or the closest ancestor."""
    folder = path.parent
    try:
        while not folder.exists():
            if folder.is_symlink() or folder == folder.parent:
                raise UnwritableOutputError(f"cannot write {path}: its folder {folder} cannot be created")
            folder = folder.parent
        if not folder.is_dir():
            raise UnwritableOutputError(f"cannot write {path}: {folder} is a file, not a folder")
    except OSError as exc:  # e.g. a folder on the way that may not be searched
        raise UnwritableOutputError(f"cannot write {path}: {exc.strerror or exc}: {exc.filename or folder}") from exc
    return folder


def probe_writable(path: str | Path) -> None:
    """Prove ``path`` can be written by creating and removing its temporary file where it will go.

    Permission bits are not enough (root ignores them; read-only mounts, ``/proc``, a parent that
    is a file, a name too long once prefixed all fail only on a real attempt). When the parent
    folder does not exist yet, the nearest existing ancestor must accept a new entry.
    """
    path = Path(path)
    folder = _nearest_existing_folder(path)
    probe = temporary_path(folder / path.name)
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        reason = exc.strerror or exc
        raise UnwritableOutputError(f"cannot write {path}: cannot create a file in {folder} ({reason})") from exc
    os.unlink(probe)


def atomic_write(path: str | Path, write: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Call ``write(temporary_path)`` and move the result to ``path`` atomically.

    Parent folders are created and stale temporaries of ``path`` swept (module docstring). On any
    error the temporary file is removed and ``path`` is left exactly as it was.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        refuse_existing(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    temporary = temporary_path(path)
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


def _keep_aside(path: Path) -> Path | None:
    """A backup of an existing ``path`` (a hard link, else a copy), named as a temporary of it."""
    if not path.is_file():
        return None
    backup = temporary_path(path)
    try:
        os.link(path, backup)
    except OSError:
        shutil.copy2(path, backup)
    return backup


def _put_back(path: Path, backup: Path | None, existed: bool) -> None:
    """Undo this run's write of ``path``: restore the backup, or remove a file this run created."""
    if backup is not None:
        os.replace(backup, path)
    elif not existed:
        path.unlink(missing_ok=True)


def _keep_all_aside(paths: list[Path]) -> dict[Path, Path | None]:
    """Backups of every existing path, or none at all if one cannot be made."""
    backups: dict[Path, Path | None] = {}
    try:
        for path in paths:
            backups[path] = _keep_aside(path)
    except BaseException:
        for backup in backups.values():
            if backup is not None:
                backup.unlink(missing_ok=True)
        raise
    return backups


@contextmanager
def all_or_nothing(paths: Iterable[str | Path | None]) -> Iterator[None]:
    """Write several outputs as one result: if any write in the block fails, every path is put
    back as it was (created files removed, replaced files restored), so a mask never survives
    without the overlay or RLE asked for with it. ``None`` entries are skipped."""
    targets = [Path(p) for p in dict.fromkeys(p for p in paths if p is not None)]
    existed = {path: path.exists() for path in targets}
    backups = _keep_all_aside(targets)
    try:
        yield
    except BaseException:
        for path in targets:
            try:
                _put_back(path, backups[path], existed[path])
            except OSError:
                pass  # keep the original error; a backup left behind is swept like a temporary
        raise
    for backup in backups.values():
        if backup is not None:
            backup.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), overwrite=overwrite)


def write_text_atomic(path: str | Path, text: str, overwrite: bool = False) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return write_bytes_atomic(path, text.encode("utf-8"), overwrite=overwrite)
