"""Training checkpoints as plain data, so resuming never needs an unrestricted unpickler.

mmengine saves objects (``HistoryBuffer`` in the message hub, NumPy arrays in RNG states, a
``Counter`` in step schedulers) that ``torch.load(weights_only=True)`` refuses; the usual fix,
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``, lets any tampered ``iter_N.pth`` run code. Instead, every
checkpoint this project writes has those objects encoded as tensors and plain containers (tagged
dicts) just before it is saved, and decoded right after it is read through
:func:`ultrasam.checkpoints.read_checkpoint` with ``allow_stubs=False``.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.registry import HOOKS

TAG = "__ultrasam_type__"


def encode(value: Any) -> Any:
    """``value`` with every NumPy array/scalar, ``HistoryBuffer`` and ``Counter`` as tagged plain data."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, HistoryBuffer):
        log, count = value.data
        return {TAG: "HistoryBuffer", "max_length": int(value.max_length), "log": encode(log), "count": encode(count)}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return {TAG: "list", "items": [encode(v) for v in value.tolist()]}
        return {
            TAG: "ndarray",
            "dtype": value.dtype.str,
            "shape": list(value.shape),
            "data": torch.from_numpy(np.frombuffer(np.ascontiguousarray(value).tobytes(), dtype=np.uint8).copy()),
        }
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Counter):
        return {TAG: "Counter", "items": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, OrderedDict):
        return OrderedDict((k, encode(v)) for k, v in value.items())
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(encode(v) for v in value)
    return value


def decode(value: Any) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(value, dict) and value.get(TAG) is not None:
        kind = value[TAG]
        if kind == "HistoryBuffer":
            buffer = HistoryBuffer(max_length=value["max_length"])
            buffer._log_history, buffer._count_history = decode(value["log"]), decode(value["count"])
            return buffer
        if kind == "ndarray":
            raw = value["data"].numpy().tobytes()
            return np.frombuffer(raw, dtype=np.dtype(value["dtype"])).reshape(value["shape"]).copy()
        if kind == "Counter":
            return Counter({decode(k): decode(v) for k, v in value["items"]})
        if kind == "list":
            return np.array([decode(v) for v in value["items"]], dtype=object)
        raise ValueError(f"unknown encoded type {kind!r}")
    if isinstance(value, OrderedDict):
        return OrderedDict((k, decode(v)) for k, v in value.items())
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(decode(v) for v in value)
    return value


@HOOKS.register_module()
class PlainCheckpointHook(Hook):
    """Encode the checkpoint as plain data after every other hook has added to it."""

    priority = "LOWEST"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in list(checkpoint):
            if key != "state_dict":
                checkpoint[key] = encode(checkpoint[key])
