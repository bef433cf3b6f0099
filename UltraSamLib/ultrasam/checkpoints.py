"""Reading checkpoint files safely and recognising their layout.

A checkpoint is data, never code. Two formats are read, both without ``torch.load``:

* ``safetensors`` (what this project writes): tensors plus a JSON header, no pickle at all; the
  project's own metadata (model family, provenance) travels in the header under ``"ultrasam"``.
* PyTorch's zip format (SAM, MedSAM, LiteMedSAM, mmengine/mmdet checkpoints such as UltraSam.pth),
  read by :mod:`ultrasam.safe_unpickle`: a restricted pure-Python unpickler that rebuilds tensors
  and plain containers, turns every other object into an inert stub, refuses ``BUILD`` on anything
  real, and checks every size before it materialises anything. PyTorch's legacy pre-1.6 format is
  refused with a message.

Model tensors must be finite: a file with NaN or Inf weights is refused by :func:`extract_state_dict`.
"""

from __future__ import annotations

import json
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch

from ultrasam import safe_unpickle
from ultrasam.errors import CheckpointError

#: Key of the safetensors header entry holding this project's metadata (a JSON object).
METADATA_KEY = "ultrasam"


def read_checkpoint(path: str | Path, *, allow_stubs: bool = True) -> Any:
    """Load a checkpoint container (tensors on the CPU) without executing anything it names.

    A safetensors file comes back as ``{"state_dict": tensors, "meta": metadata}``.
    ``allow_stubs=False`` refuses zip checkpoints holding anything but plain data.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a folder, not a file: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint is empty (0 bytes): {path}")
    if is_safetensors(path):
        return read_safetensors(path)
    _check_container(path)
    return safe_unpickle.load(path, allow_stubs=allow_stubs)


def is_safetensors(path: Path) -> bool:
    """A safetensors file starts with its header's length (8 bytes, little endian) and a JSON ``{``."""
    with path.open("rb") as handle:
        head = handle.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 0 < length < path.stat().st_size


def read_safetensors(path: Path) -> dict[str, Any]:
    """Tensors and this project's metadata from a safetensors file (which holds no code by design)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            tensors = OrderedDict((key, handle.get_tensor(key)) for key in handle.keys())
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"safetensors file is truncated or corrupt: {path} ({_short(exc)})") from exc
    try:
        meta = json.loads(header.get(METADATA_KEY, "{}"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"safetensors metadata of {path} is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"safetensors metadata of {path} must be a JSON object")
    return {"state_dict": tensors, "meta": meta}


def write_safetensors(tensors: Mapping[str, torch.Tensor], path: str | Path, meta: Mapping[str, Any]) -> None:
    """Write contiguous CPU tensors and ``meta`` (JSON-serialisable) as one safetensors file."""
    from safetensors.torch import save_file

    plain = {key: value.detach().cpu().contiguous() for key, value in tensors.items()}
    save_file(plain, str(path), metadata={METADATA_KEY: json.dumps(dict(meta), default=str)})


def checkpoint_meta(container: Any) -> dict[str, Any]:
    """The ``meta`` mapping of a container (mmengine or safetensors), or ``{}``."""
    meta = container.get("meta") if isinstance(container, Mapping) else None
    return dict(meta) if isinstance(meta, Mapping) else {}


def _check_container(path: Path) -> None:
    """Name foreign files (HDF5, JSON, images) before the zip reader gives a generic message."""
    with path.open("rb") as handle:
        head = handle.read(4)
    if not head.startswith(b"PK") and head[:1] != b"\x80":  # zip, or legacy torch (refused by the reader)
        raise CheckpointError(f"not a PyTorch checkpoint ({_describe_foreign(head)}): {path}")


def _describe_foreign(head: bytes) -> str:
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file, e.g. Keras weights"
    if head[:1] in (b"{", b"["):
        return "a JSON/text file"
    if head.startswith(b"\x89PNG"):
        return "a PNG image"
    return f"unrecognised header {head!r}"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def extract_state_dict(container: Any, path: str | Path = "") -> "OrderedDict[str, torch.Tensor]":
    """The model tensors inside any of the usual containers (mmengine, MedSAM, bare)."""
    obj = container
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"no state dict found in checkpoint {path}: top-level is {type(container).__name__}")
    tensors = OrderedDict((k, v) for k, v in obj.items() if isinstance(v, torch.Tensor))
    if not tensors:
        raise CheckpointError(f"checkpoint {path} holds no tensors under its state dict")
    if all(k.startswith("module.") for k in tensors):
        tensors = OrderedDict((k[len("module.") :], v) for k, v in tensors.items())
    _check_finite(tensors, path)
    return tensors


def _check_finite(tensors: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """NaN or Inf weights give empty masks and meaningless scores: refuse them by name."""
    bad = [
        (k, int((~torch.isfinite(v)).sum()))
        for k, v in tensors.items()
        if v.is_floating_point() and not torch.isfinite(v).all()
    ]
    if bad:
        names = ", ".join(f"{k} ({n} values)" for k, n in bad[:3]) + (" ..." if len(bad) > 3 else "")
        raise CheckpointError(f"checkpoint {path} has NaN or infinite weights in {len(bad)} tensors: {names}")


def load_state_dict(path: str | Path) -> "OrderedDict[str, torch.Tensor]":
    """Read ``path`` safely and return its model tensors."""
    return extract_state_dict(read_checkpoint(path), path)


def load_strict(
    module: "torch.nn.Module",
    state_dict: Mapping[str, torch.Tensor],
    allow_missing: tuple[str, ...] = (),
    what: str = "checkpoint",
) -> None:
    """``load_state_dict(strict=True)`` that names every missing, unexpected and mis-shaped tensor in
    one :class:`CheckpointError`; keys starting with ``allow_missing`` may be absent."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict and not k.startswith(allow_missing)]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in state_dict
        if k in own and state_dict[k].shape != own[k].shape
    ]
    problems = [
        f"{len(items)} {label}: " + ", ".join(items[:5]) + (" ..." if len(items) > 5 else "")
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
        if items
    ]
    if problems:
        raise CheckpointError(f"{what} does not fit the model — " + "; ".join(problems))
    module.load_state_dict(state_dict, strict=not allow_missing)


# --------------------------------------------------------------------------------------------
# Layout detection


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which key layout the tensors follow: ``mmdet_ultrasam``, ``sam_vit`` or ``litemedsam``."""
    keys = state_dict.keys()
    if "prompt_encoder.label_encoder.label_embedding.weight" in keys and any(k.startswith("backbone.") for k in keys):
        return "mmdet_ultrasam"
    if "image_encoder.patch_embed.proj.weight" in keys and "image_encoder.pos_embed" in keys:
        return "sam_vit"
    if any(k.startswith("image_encoder.patch_embed.seq.") for k in keys) or any(
        k.startswith("image_encoder.layers.0.blocks.") for k in keys
    ):
        return "litemedsam"
    sample = ", ".join(list(keys)[:4])
    raise CheckpointError(
        "unrecognised checkpoint layout: expected UltraSam (mmdet), SAM/MedSAM or LiteMedSAM keys; "
        f"first keys are: {sample}"
    )


def sam_family_from_vit_width(embed_dim: int) -> str:
    """SAM releases differ only by encoder width; other widths (e.g. tiny test models) are 'custom'."""
    return {768: "sam_vit_b", 1024: "sam_vit_l", 1280: "sam_vit_h"}.get(embed_dim, "sam_vit_custom")
