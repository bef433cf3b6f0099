"""`ultrasam export --pin`: a packaged file is registered with the size and sha256 of its bytes,
re-pinning replaces the entry in place, and files outside the package are refused."""

from __future__ import annotations

import hashlib
import json

import pytest

from ultrasam import weights
from ultrasam_training.train.errors import TrainingError
from ultrasam_training.train.export import pin_packaged_weights


@pytest.fixture
def package(tmp_path):
    """A stand-in package folder: a registry with one entry and an assets folder."""
    root = tmp_path / "pkg"
    (root / "assets").mkdir(parents=True)
    registry = {
        "schema": 1,
        "weights": [
            {"name": "base", "family": "litemedsam", "source": "https://127.0.0.1/base.pth", "file_name": "base.pth",
             "licence": "Apache-2.0", "sha256": "ab" * 32}
        ],
    }
    (root / "weights.json").write_text(json.dumps(registry))
    return root


def test_a_packaged_file_is_pinned_by_its_own_bytes_and_repinned_in_place(package):
    asset = package / "assets" / "tuned.safetensors"
    asset.write_bytes(b"first version")
    pin_packaged_weights(asset, name="tuned", family="ultrasam_lite", base="base", description="d",
                         registry_path=package / "weights.json")
    entries = weights.load_registry(package / "weights.json")
    assert list(entries) == ["tuned", "base"]
    tuned = entries["tuned"]
    assert tuned.source == "package:assets/tuned.safetensors" and tuned.base == "base"
    assert tuned.size == len(b"first version") and tuned.sha256 == hashlib.sha256(b"first version").hexdigest()

    asset.write_bytes(b"second, longer version")
    pin_packaged_weights(asset, name="tuned", family="ultrasam_lite", base="base", description="d",
                         registry_path=package / "weights.json")
    entries = weights.load_registry(package / "weights.json")
    assert list(entries) == ["tuned", "base"]
    assert entries["tuned"].sha256 == hashlib.sha256(b"second, longer version").hexdigest()


def test_a_file_outside_the_package_is_refused_and_the_registry_is_untouched(package, tmp_path):
    before = (package / "weights.json").read_bytes()
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes(b"x")
    with pytest.raises(TrainingError, match="not inside the package"):
        pin_packaged_weights(outside, name="tuned", family="ultrasam_lite", base="base", description="d",
                             registry_path=package / "weights.json")
    assert (package / "weights.json").read_bytes() == before


def test_pin_without_a_delta_is_refused_by_the_cli(tmp_path, capsys):
    from ultrasam.cli import main

    code = main(["export", str(tmp_path / "ckpt.pth"), str(tmp_path / "out.safetensors"), "--pin", "x"])
    assert code != 0
    assert "--delta-base" in capsys.readouterr().err
