"""Reading checkpoint files safely and recognising their layout.

A checkpoint is data, never code: files are read with ``torch.load(weights_only=True)``, and
containers that it refuses (mmengine checkpoints carry ``HistoryBuffer`` objects in their
``message_hub``) are read with a restricted unpickler that rebuilds tensors and plain
containers and turns every other global into an inert stub. Nothing named in the file is
imported or called.
"""

from __future__ import annotations

import pickle
import types
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch

from ultrasam.errors import CheckpointError

StateDict = "OrderedDict[str, torch.Tensor]"

# Globals a checkpoint may name that are rebuilt for real: tensor reconstruction and containers.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch", "Size"): torch.Size,
    ("torch", "float32"): torch.float32,
    ("torch", "float16"): torch.float16,
    ("torch", "bfloat16"): torch.bfloat16,
}


class _Inert:
    """Stand-in for an object of a class the checkpoint names but we refuse to import."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args

    def __setstate__(self, state: Any) -> None:
        self._state = state

    def __call__(self, *args: Any, **kwargs: Any) -> "_Inert":
        return _Inert()

    def append(self, item: Any) -> None:  # list-like BUILD paths
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


def _stub_class(module: str, name: str) -> type:
    return type(name, (_Inert,), {"__module__": f"ultrasam_stub.{module}"})


def _safe_getattr(obj: Any, name: str, *default: Any) -> Any:
    """``getattr`` restricted to stubs: pickles use it to name class methods such as
    ``getattr(HistoryBuffer, 'min')``; on anything real it would be a path to arbitrary code."""
    if isinstance(obj, type) and issubclass(obj, _Inert) or isinstance(obj, _Inert):
        return _Inert
    raise pickle.UnpicklingError(f"refusing getattr({type(obj).__name__}, {name!r}) in a checkpoint")


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if (module, name) in {("builtins", "getattr"), ("__builtin__", "getattr")}:
            return _safe_getattr
        return _stub_class(module, name)


_restricted_pickle = types.SimpleNamespace(
    Unpickler=_RestrictedUnpickler, load=pickle.load, loads=pickle.loads, __name__="ultrasam_restricted_pickle"
)


def read_checkpoint(path: str | Path) -> Any:
    """Load a checkpoint container without executing any code it names."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a folder, not a file: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint is empty (0 bytes): {path}")
    _check_container(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # a container with non-tensor objects (mmengine message hub): read restricted below
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"checkpoint is truncated or corrupt: {path} ({_short(exc)})") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_restricted_pickle)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, pickle.UnpicklingError, ValueError) as exc:
        raise CheckpointError(f"checkpoint cannot be read: {path} ({_short(exc)})") from exc


def _check_container(path: Path) -> None:
    """Tell truncated zips and foreign files apart before torch gives a cryptic message."""
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as exc:
            raise CheckpointError(f"checkpoint is truncated or corrupt (broken zip archive): {path}") from exc
        if not any(name.endswith("data.pkl") for name in names):
            raise CheckpointError(f"not a PyTorch checkpoint (a zip archive without data.pkl): {path}")
        return
    if head[:1] != b"\x80":  # legacy torch.save files are raw pickles (protocol 2+)
        kind = _describe_foreign(head)
        raise CheckpointError(f"not a PyTorch checkpoint ({kind}): {path}")


def _describe_foreign(head: bytes) -> str:
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file, e.g. Keras weights"
    if head[:1] in (b"{", b"["):
        return "a JSON/text file"
    if head.startswith(b"\x89PNG"):
        return "a PNG image"
    if len(head) == 4 and head[:1] in (b"\x00",):
        return "looks like safetensors or raw binary"
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
        tensors = OrderedDict((k[len("module."):], v) for k, v in tensors.items())
    return tensors


def load_state_dict(path: str | Path) -> "OrderedDict[str, torch.Tensor]":
    """Read ``path`` safely and return its model tensors."""
    return extract_state_dict(read_checkpoint(path), path)


def load_strict(
    module: "torch.nn.Module", state_dict: Mapping[str, torch.Tensor], allow_missing: tuple[str, ...] = (), what: str = "checkpoint"
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
