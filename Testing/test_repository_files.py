"""What git holds: source, docs and exactly one binary, the shipped model delta (≤ 20 MB, pinned)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = "UltraSamLib/ultrasam/assets/ultrasam_lite_v2.safetensors"


def tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in listing.decode().split("\0") if name]


def test_only_the_shipped_model_is_over_5_mb():
    large = sorted(str(p.relative_to(ROOT)) for p in tracked_files() if p.is_file() and p.stat().st_size > 5_000_000)
    assert large == [SHIPPED]
    assert (ROOT / SHIPPED).stat().st_size <= 20_000_000


def test_the_shipped_model_is_the_one_the_registry_pins():
    from ultrasam import weights

    entry = weights.get_entry("ultrasam_lite")
    assert entry.package_path == (ROOT / SHIPPED).resolve()
    assert hashlib.sha256((ROOT / SHIPPED).read_bytes()).hexdigest() == entry.sha256
