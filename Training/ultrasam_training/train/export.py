"""Plain ``segment_anything``-layout state dicts for the predictor and Slicer.

The training model's parameters already carry SAM key names (``image_encoder.*``,
``prompt_encoder.*``, ``mask_decoder.*``), so exporting means: take the tensors out of the
mmengine container (read without executing anything it names), check the result builds a model
with ``ultrasam.models``, and save them as ``safetensors`` (no pickle) whose header names the
model family, so the file reopens with its own preprocessing recipe (a ViT-b UltraSam would
otherwise look like SAM ViT-b).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from ultrasam.atomic import atomic_write
from ultrasam.checkpoints import checkpoint_meta, extract_state_dict, read_checkpoint, write_safetensors
from ultrasam.models.door import NON_MODEL_PREFIXES
from ultrasam_training.train.errors import TrainingError


def plain_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Model tensors only, contiguous fp32 (or their own dtype if integer) on the CPU."""
    out = {}
    for key, tensor in state_dict.items():
        if key.startswith(NON_MODEL_PREFIXES):
            continue
        tensor = tensor.detach().cpu()
        out[key] = (tensor.float() if tensor.is_floating_point() else tensor).contiguous().clone()
    return out


def save_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    out: str | Path,
    *,
    family: str | None = None,
    metadata: dict | None = None,
    overwrite: bool = False,
    verify: bool = True,
) -> Path:
    """Write ``state_dict`` atomically as safetensors; with ``verify`` first check it builds a model.

    The header's metadata holds ``ultrasam_family`` (the recipe the weights expect) and
    ``metadata`` (provenance: iteration, config, seed, source).
    """
    tensors = plain_state_dict(state_dict)
    if verify:
        from ultrasam.models import model_from_state_dict

        family = model_from_state_dict(tensors, family=family, fast=False, source=str(out)).spec.family
    meta = {"ultrasam_family": family, **(metadata or {})}
    return atomic_write(Path(out), lambda tmp: write_safetensors(tensors, tmp, meta), overwrite=overwrite)


def export_checkpoint(
    checkpoint: str | Path, out: str | Path, *, family: str | None = None, overwrite: bool = False
) -> Path:
    """mmengine checkpoint (or any container) → plain segment_anything-layout ``out``."""
    container = read_checkpoint(checkpoint)
    state_dict = extract_state_dict(container, checkpoint)
    meta = checkpoint_meta(container)
    iteration = meta.get("iter") if isinstance(meta.get("iter"), int) else meta.get("iteration")
    family = family or _family(meta)
    if not any(k.startswith("mask_decoder.") for k in state_dict):
        raise TrainingError(f"{checkpoint} holds no mask decoder tensors: not a training checkpoint of this project")
    return save_state_dict(
        state_dict,
        out,
        family=family,
        overwrite=overwrite,
        metadata={"source": str(checkpoint), "iteration": iteration},
    )


def _family(meta: Mapping) -> str | None:
    family = meta.get("ultrasam_family")
    return family if isinstance(family, str) else None


def export_delta(
    checkpoint: str | Path,
    out: str | Path,
    *,
    base: str,
    family: str,
    config: str | Path | None = None,
    metrics: Mapping | None = None,
    overwrite: bool = False,
) -> Path:
    """Write only the tensors of ``checkpoint`` that differ from the registered ``base`` weights.

    The header records the format, the family, the base's name and pinned sha256 (a delta never
    composes with other weights), the training config's sha256, the git commit and ``metrics``.
    """
    import hashlib
    import subprocess

    from ultrasam import weights
    from ultrasam.delta import DELTA_FORMAT, make_delta

    entry = weights.get_entry(base)
    if entry.sha256 is None:
        raise TrainingError(f"the base weights {base!r} have no pinned sha256: a delta needs a byte-exact base")
    base_path = weights.fetch(base)
    base_tensors = plain_state_dict(extract_state_dict(read_checkpoint(base_path), base_path))
    container = read_checkpoint(checkpoint)
    tuned = plain_state_dict(extract_state_dict(container, checkpoint))
    delta = make_delta(base_tensors, tuned)
    if not delta:
        raise TrainingError(f"{checkpoint} is identical to {base}: nothing to ship")
    config_sha256 = hashlib.sha256(Path(config).read_bytes()).hexdigest() if config else None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    source_meta = checkpoint_meta(container)
    meta = {
        "format": DELTA_FORMAT,
        "ultrasam_family": family,
        "base": {"name": base, "sha256": entry.sha256},
        "config": Path(config).name if config else source_meta.get("config"),
        "config_sha256": config_sha256,
        "iteration": source_meta.get("iteration"),
        "seed": source_meta.get("seed"),
        "git_commit": commit,
        "metrics": dict(metrics or {}),
    }
    from ultrasam.checkpoints import write_safetensors
    from ultrasam.delta import compose
    from ultrasam.models import model_from_state_dict

    model_from_state_dict(compose(base_tensors, {"state_dict": delta, "meta": meta}, entry.sha256), family=family)
    return atomic_write(Path(out), lambda tmp: write_safetensors(delta, tmp, meta), overwrite=overwrite)


def pin_packaged_weights(
    asset: str | Path,
    *,
    name: str,
    family: str,
    base: str | None,
    description: str,
    licence: str = "Apache-2.0",
    registry_path: str | Path | None = None,
) -> dict:
    """Register (or re-pin) a file shipped inside the ``ultrasam`` package in its ``weights.json``.

    The entry's size and sha256 are measured on ``asset`` now, so the registry and the shipped
    bytes cannot drift apart: every load re-checks both. A new entry goes first (the registry's
    order is the order ``ultrasam weights list`` shows); an existing one keeps its place.
    """
    import hashlib
    import json

    from ultrasam import weights

    registry_path = Path(registry_path or weights.REGISTRY_PATH)
    package_root = registry_path.resolve().parent
    asset = Path(asset).resolve()
    try:
        relative = asset.relative_to(package_root)
    except ValueError:
        raise TrainingError(f"{asset} is not inside the package folder {package_root}: only packaged files are pinned")
    data = asset.read_bytes()
    entry = {
        "name": name,
        "family": family,
        "source": f"{weights.PACKAGE_PREFIX}{relative.as_posix()}",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "md5": None,
        "licence": licence,
        "file_name": asset.name,
        "homepage": None,
        "description": description,
        "checksum_source": "measured on the packaged file when it was exported (ultrasam export --pin)",
        "base": base,
    }
    weights.WeightsEntry(**entry)  # validates the fields before anything is written
    registry = json.loads(registry_path.read_text(encoding="utf-8"))
    listed = registry.setdefault("weights", [])
    for index, existing in enumerate(listed):
        if existing.get("name") == name:
            listed[index] = entry
            break
    else:
        listed.insert(0, entry)
    text = json.dumps(registry, indent=2, ensure_ascii=False) + "\n"

    def write_checked(tmp: Path) -> None:
        Path(tmp).write_text(text, encoding="utf-8")
        weights.load_registry(tmp)  # still a registry (no duplicate names) before it replaces the old one

    atomic_write(registry_path, write_checked, overwrite=True)
    return entry
