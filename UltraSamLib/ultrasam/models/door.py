"""One door to a ready model: a registry name, a checkpoint file or an in-memory container in.

Every front end (CLI, Slicer logic, evaluation, training) opens models through :func:`open_model`,
so the default weights, the device policy and the family precedence are decided once:

* **family**: ``family=`` if given, else the one the file records (``ultrasam_family`` in a
  safetensors header or an mmengine ``meta``), else the registry entry's, else the layout's.
* **device**: ``auto`` picks CUDA, then Apple ``mps``, then the CPU; a requested device that is
  missing is one clear :class:`~ultrasam.errors.UltraSamError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from ultrasam.checkpoints import checkpoint_meta, extract_state_dict, read_checkpoint
from ultrasam.errors import CheckpointError, UltraSamError
from ultrasam.weights import DEFAULT_WEIGHTS

#: Keys of training wrappers that are not part of the model (mmengine's data preprocessor).
NON_MODEL_PREFIXES = ("data_preprocessor.",)
DEVICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto``/None → CUDA, else ``mps``, else CPU; an unavailable device is one clear error."""
    if isinstance(device, torch.device):
        device = str(device)
    name = (device or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UltraSamError(
                f"device {device!r} was requested but this torch build sees no CUDA GPU (torch {torch.__version__}); "
                "choose 'cpu', or install a CUDA build of torch (see the README)"
            )
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise UltraSamError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device(name)
    if name == "mps":
        if not _mps_available():
            raise UltraSamError("device 'mps' was requested but Apple Metal is not available; choose 'cpu'")
        return torch.device("mps")
    raise UltraSamError(f"unknown device {device!r}; use {DEVICES}")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def open_model(
    source: str | Path | Mapping[str, Any] | None = None,
    family: str | None = None,
    device: str | torch.device | None = "auto",
    fast: bool = True,
):
    """A ready :class:`~ultrasam.models.SamModel` from ``source``.

    ``source``: None (the default weights, :data:`DEFAULT_WEIGHTS`), a registered weights name
    (fetched into the cache), a checkpoint file (safetensors, PyTorch zip: SAM, MedSAM,
    LiteMedSAM, UltraSam mmdet, this project's mmengine ``iter_N.pth``), or a container already
    in memory (a state dict or an mmengine-style ``{"state_dict", "meta"}`` mapping).
    ``fast`` swaps in the accelerated encoder attention (same weights, fp32 results within 1e-4).
    """
    from ultrasam.models import model_from_state_dict

    target = resolve_device(device)
    label, container, registry_family = _container(DEFAULT_WEIGHTS if source is None else source)
    state_dict = extract_state_dict(container, label)
    state_dict = type(state_dict)((k, v) for k, v in state_dict.items() if not k.startswith(NON_MODEL_PREFIXES))
    family = family or _recorded_family(container) or registry_family
    model = model_from_state_dict(state_dict, family=family, fast=fast, source=label)
    return model.to(target)


def _container(source: str | Path | Mapping[str, Any]) -> tuple[str, Any, str | None]:
    """(label, container, the registry's family if ``source`` is a registered name)."""
    if isinstance(source, Mapping):
        return "<in-memory checkpoint>", source, None
    path = Path(str(source)).expanduser()
    if path.exists() or isinstance(source, Path) or path.suffix or len(path.parts) > 1:
        container = read_checkpoint(path)  # a path: read_checkpoint names what is wrong
        from ultrasam.delta import is_delta

        if is_delta(container):
            raise CheckpointError(
                f"{path} holds only the tensors that differ from its base model "
                f"({checkpoint_meta(container).get('base', {}).get('name', '?')}); open it by its registered name"
            )
        return str(path), container, None
    from ultrasam import weights

    try:
        entry = weights.get_entry(str(source))
    except weights.WeightsError:
        known = ", ".join(e.name for e in weights.list_weights())
        raise CheckpointError(
            f"{source!s} is neither a checkpoint file nor a registered weights name ({known})"
        ) from None
    path = weights.fetch(entry.name)
    container = read_checkpoint(path)
    if entry.base is not None:  # a delta shipped in the package, composed with its registered base
        from ultrasam.delta import compose

        base = weights.get_entry(entry.base)
        base_path = weights.fetch(base.name)
        base_tensors = extract_state_dict(read_checkpoint(base_path), base_path)
        meta = {**checkpoint_meta(container), "ultrasam_family": entry.family}
        container = {"state_dict": compose(base_tensors, container, base.sha256, label=str(path)), "meta": meta}
    return str(path), container, entry.family


def _recorded_family(container: Any) -> str | None:
    family = checkpoint_meta(container).get("ultrasam_family")
    return family if isinstance(family, str) else None
