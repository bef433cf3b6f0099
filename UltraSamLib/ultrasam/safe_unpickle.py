"""Read PyTorch's zip checkpoint format without ever executing what the file names.

``torch.load`` trusts the pickle inside a checkpoint; even ``weights_only=True`` cannot be told
to turn unknown classes into harmless stand-ins (which reading mmengine containers needs) nor to
bound the work a small hostile file causes. So every checkpoint this project opens is read here:

* **Only the zip format** (every ``torch.save`` since PyTorch 1.6). The legacy raw-pickle format
  is refused: its header records are pickles torch unpickles with whatever module it is given.
* **A pure-Python unpickler with a closed table of globals.** Tensor rebuilding and a few plain
  types are *frozen wrappers* defined here (a file cannot set attributes on them); anything else
  the file names becomes an inert stub — or, with ``allow_stubs=False``, a refusal. ``BUILD``
  (the opcode that sets an object's state) is allowed on stubs only, so a file cannot reach into
  a real function or class and poison the process for the next load.
* **Bounded work and memory.** ``data.pkl`` is read up to :data:`MAX_PICKLE_BYTES` and
  unpickled in at most :data:`MAX_PICKLE_OPS` opcodes; every storage's declared size is checked
  against its archive entry before it is read; every tensor's shape and strides must fit inside
  its storage with no overlapping elements, so a 1 KB file cannot describe a 4 GB tensor.

Everything that goes wrong raises :class:`UnsafeCheckpoint` (a :class:`CheckpointError`).
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import torch

from ultrasam.errors import CheckpointError

#: The structure pickle of a checkpoint (tensor data excluded) is small: ViT-b with its optimizer
#: state is ~100 KB, a long mmengine run's message hub a few MB.
MAX_PICKLE_BYTES = 64 * 2**20
#: One opcode is a few microseconds in the pure-Python unpickler: this bounds a load to seconds.
MAX_PICKLE_OPS = 4_000_000
#: Largest tensor data one file may hold (ViT-h with Adam state is ~7.5 GB).
MAX_TOTAL_STORAGE_BYTES = 16 * 2**30
#: A deflated archive entry may expand at most this much (torch itself stores entries uncompressed).
MAX_COMPRESSION_RATIO = 200


class UnsafeCheckpoint(CheckpointError):
    """The file is not a checkpoint this reader accepts (legacy, hostile, inconsistent or too big)."""


class _Frozen:
    """A callable the pickle may name but cannot modify: no ``__dict__``, no attribute setting."""

    __slots__ = ("_name", "_function")

    def __init__(self, name: str, function: Callable[..., Any]) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_function", function)

    def __setattr__(self, key: str, value: Any) -> None:
        raise UnsafeCheckpoint(f"checkpoint tries to set {key!r} on {self._name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<allowed {self._name}>"


class _Storage:
    """One storage record: bytes read from the archive, typed lazily by the tensor that uses it."""

    __slots__ = ("data", "dtype", "numel")

    def __init__(self, data: torch.UntypedStorage, dtype: torch.dtype, numel: int) -> None:
        self.data, self.dtype, self.numel = data, dtype, numel


class Stub:
    """Stand-in for an object of a class the checkpoint names and this reader refuses to import."""

    _ultrasam_name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> "Stub":
        return _stub_class("call", self._ultrasam_name)()

    def append(self, item: Any) -> None:
        """List-like pickles (APPENDS) build stubs too: their items are dropped."""

    def __setitem__(self, key: Any, value: Any) -> None:
        """Dict-like pickles (SETITEMS) build stubs too: their items are dropped."""


def _stub_class(module: str, name: str) -> type:
    return type(name, (Stub,), {"__module__": f"ultrasam_stub.{module}", "_ultrasam_name": f"{module}.{name}"})


# ---------------------------------------------------------------------------------------------
# Tensors: rebuilt only from checked storages, shapes and strides.


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list, torch.Size)) or not all(type(v) is int for v in value):
        raise UnsafeCheckpoint(f"tensor {what} must be a tuple of integers, not {value!r:.80}")
    return tuple(value)


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A tensor viewing ``storage``, refused unless every element lies inside it and none overlaps."""
    if not isinstance(storage, _Storage):
        raise UnsafeCheckpoint("tensor rebuilt from something that is not a storage record")
    dtype = dtype or storage.dtype
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if type(offset) is not int or offset < 0 or len(size) != len(stride) or any(s < 0 for s in size + stride):
        raise UnsafeCheckpoint(f"tensor geometry is invalid (offset {offset!r}, size {size}, stride {stride})")
    itemsize = torch.empty((), dtype=dtype).element_size()
    capacity = storage.data.nbytes() // itemsize
    numel = math.prod(size)
    if numel:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= capacity or numel > capacity:
            raise UnsafeCheckpoint(
                f"tensor of shape {size} (strides {stride}, offset {offset}) does not fit its storage of "
                f"{capacity} elements: refused before materialising"
            )
        if numel > 1 and sorted(s for n, s in zip(size, stride) if n > 1)[0] == 0:
            raise UnsafeCheckpoint(f"tensor of shape {size} repeats elements (a zero stride): refused")
    return torch.empty(0, dtype=dtype).set_(storage.data, offset, size, stride)


def _rebuild_tensor(storage, offset, size, stride):
    return _tensor(storage, offset, size, stride)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    if backward_hooks:
        raise UnsafeCheckpoint("tensor carries backward hooks: refused")
    return _tensor(storage, offset, size, stride)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    if not isinstance(dtype, torch.dtype) or backward_hooks:
        raise UnsafeCheckpoint("tensor with an invalid dtype or backward hooks: refused")
    return _tensor(storage, offset, size, stride, dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    """Parameters come back as plain tensors: the model that receives them owns the Parameter."""
    if not isinstance(data, torch.Tensor):
        raise UnsafeCheckpoint("parameter rebuilt from something that is not a tensor")
    return data


def _ordered_dict(*args: Any) -> OrderedDict:
    if len(args) > 1 or (args and not isinstance(args[0], (list, tuple, dict))):
        raise UnsafeCheckpoint("OrderedDict built from unexpected arguments")
    return OrderedDict(*args)


def _size(*args: Any) -> torch.Size:
    return torch.Size(_ints(args[0] if args else (), "torch.Size"))


_STORAGE_DTYPES: dict[str, torch.dtype] = {
    name: dtype for dtype, name in torch.storage._dtype_to_storage_type_map().items() if not name.startswith("Q")
}
_STORAGE_DTYPES["UntypedStorage"] = torch.uint8
_DTYPES: dict[str, torch.dtype] = {
    n: getattr(torch, n) for n in dir(torch) if isinstance(getattr(torch, n), torch.dtype)
}


class _StorageType:
    """What ``torch.FloatStorage`` & co. become: only a dtype for the storage record that names it."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: torch.dtype) -> None:
        object.__setattr__(self, "dtype", dtype)

    def __setattr__(self, key: str, value: Any) -> None:
        raise UnsafeCheckpoint("checkpoint tries to modify a storage type")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _Frozen("collections.OrderedDict", _ordered_dict),
    ("torch", "Size"): _Frozen("torch.Size", _size),
    ("torch._utils", "_rebuild_tensor"): _Frozen("_rebuild_tensor", _rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): _Frozen("_rebuild_tensor_v2", _rebuild_tensor_v2),
    ("torch._utils", "_rebuild_tensor_v3"): _Frozen("_rebuild_tensor_v3", _rebuild_tensor_v3),
    ("torch._utils", "_rebuild_parameter"): _Frozen("_rebuild_parameter", _rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _Frozen("_rebuild_parameter_with_state", _rebuild_parameter),
    **{("torch", name): dtype for name, dtype in _DTYPES.items()},  # dtypes are immutable C objects
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}
_GETATTR_NAMES = {("builtins", "getattr"), ("__builtin__", "getattr")}


# ---------------------------------------------------------------------------------------------
# The unpickler


def _refuse_build(unpickler: "_RestrictedUnpickler") -> None:
    """``BUILD``: set state on stubs only; on anything real it could rewrite shared objects.

    The one exception is the ``_metadata`` attribute ``torch.save`` attaches to state dicts: on an
    OrderedDict this load created it is dropped (nothing here needs it).
    """
    state = unpickler.stack.pop()
    target = unpickler.stack[-1]
    if type(target) is OrderedDict and isinstance(state, dict) and set(state) <= {"_metadata"}:
        return
    if not isinstance(target, Stub):
        raise UnsafeCheckpoint(f"checkpoint tries to set the state of {type(target).__name__} objects")
    target.__setstate__(state)


def _counted(handler: Callable[[Any], None]) -> Callable[[Any], None]:
    def run(unpickler: "_RestrictedUnpickler") -> None:
        unpickler.ops += 1
        if unpickler.ops > MAX_PICKLE_OPS:
            raise UnsafeCheckpoint(f"checkpoint structure needs more than {MAX_PICKLE_OPS:,} pickle steps: refused")
        handler(unpickler)

    return run


class _RestrictedUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its opcodes can be replaced
    dispatch = {code: _counted(handler) for code, handler in pickle._Unpickler.dispatch.items()}
    dispatch[pickle.BUILD[0]] = _counted(_refuse_build)

    def __init__(self, data: bytes, storages: Callable[[tuple], _Storage], allow_stubs: bool) -> None:
        super().__init__(io.BytesIO(data))
        self.ops = 0
        self._storages = storages
        self._allow_stubs = allow_stubs

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if (module, name) in _GETATTR_NAMES:
            return _Frozen("getattr", self._getattr)
        if not self._allow_stubs:
            raise UnsafeCheckpoint(f"checkpoint holds a {module}.{name} object, which is not plain data")
        return _stub_class(module, name)

    @staticmethod
    def _getattr(obj: Any, name: str, *default: Any) -> Any:
        """Pickles name class methods as ``getattr(cls, name)``: allowed on stubs (another stub)."""
        if isinstance(obj, Stub) or (isinstance(obj, type) and issubclass(obj, Stub)):
            return _stub_class("getattr", str(name))
        raise UnsafeCheckpoint(f"checkpoint calls getattr on {type(obj).__name__}: refused")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
            raise UnsafeCheckpoint(f"unknown persistent record {str(pid)[:80]}")
        return self._storages(pid)


class _Archive:
    """The zip archive of one checkpoint: its pickle and its storage entries, read with limits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
            names = self.zip.namelist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise CheckpointError(f"checkpoint is truncated or corrupt (broken zip archive): {path}") from exc
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError(f"not a PyTorch checkpoint (a zip archive without data.pkl, or with several): {path}")
        self.prefix = pickles[0][: -len("data.pkl")]
        byteorder = f"{self.prefix}byteorder"
        if byteorder in names and self.read(byteorder, 16).strip() not in (b"little", b""):
            raise UnsafeCheckpoint(f"big-endian checkpoints are not supported: {path}")
        self.storages: dict[str, _Storage] = {}
        self.total = 0

    def read(self, name: str, limit: int) -> bytes:
        """Entry ``name``, refused if its header or its actual content exceeds ``limit`` bytes."""
        try:
            info = self.zip.getinfo(name)
        except KeyError as exc:
            raise CheckpointError(f"checkpoint is truncated or corrupt: {self.path} lacks {name}") from exc
        if info.file_size > limit:
            raise UnsafeCheckpoint(
                f"{name} in {self.path} is {info.file_size:,} bytes, more than the {limit:,} allowed"
            )
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_COMPRESSION_RATIO * max(
            info.compress_size, 1
        ):
            raise UnsafeCheckpoint(
                f"{name} in {self.path} expands {info.file_size / max(info.compress_size, 1):.0f}-fold: refused"
            )
        try:
            with self.zip.open(info) as entry:
                data = entry.read(limit + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"checkpoint is truncated or corrupt: {self.path} ({exc})") from exc
        if len(data) > limit:
            raise UnsafeCheckpoint(f"{name} in {self.path} holds more than the {limit:,} bytes allowed")
        return data

    def storage(self, pid: tuple) -> _Storage:
        """The storage a persistent record names, its declared size checked before reading."""
        _, storage_type, key, _location, numel = pid
        if (
            not isinstance(storage_type, _StorageType)
            or not isinstance(key, str)
            or type(numel) is not int
            or numel < 0
        ):
            raise UnsafeCheckpoint(f"malformed storage record {str(pid)[:80]}")
        if key in self.storages:
            return self.storages[key]
        nbytes = numel * torch.empty((), dtype=storage_type.dtype).element_size()
        self.total += nbytes
        if self.total > MAX_TOTAL_STORAGE_BYTES:
            raise UnsafeCheckpoint(
                f"checkpoint declares more than {MAX_TOTAL_STORAGE_BYTES:,} bytes of tensors: refused"
            )
        data = self.read(f"{self.prefix}data/{key}", nbytes)
        if len(data) != nbytes:
            raise CheckpointError(
                f"checkpoint is truncated or corrupt: storage {key} has {len(data)} bytes, not {nbytes}"
            )
        untyped = (
            torch.frombuffer(bytearray(data), dtype=torch.uint8).untyped_storage()
            if nbytes
            else torch.UntypedStorage(0)
        )
        self.storages[key] = _Storage(untyped, storage_type.dtype, numel)
        return self.storages[key]


def load(path: str | Path, *, allow_stubs: bool = True) -> Any:
    """The object a ``torch.save`` zip file holds, tensors on the CPU, nothing executed.

    ``allow_stubs=False`` refuses any object that is not tensors, plain containers or scalars
    (for files that must round-trip exactly, such as training checkpoints being resumed).
    """
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head.startswith(b"PK"):
        if head[:1] == b"\x80":
            raise UnsafeCheckpoint(
                f"{path} uses PyTorch's legacy (pre-1.6) format, which cannot be read without running the "
                "code it may contain: re-save it with torch.save from a current PyTorch, or convert it to safetensors"
            )
        raise CheckpointError(f"not a PyTorch zip checkpoint: {path}")
    archive = _Archive(path)
    with archive.zip:
        data = archive.read(f"{archive.prefix}data.pkl", MAX_PICKLE_BYTES)
        unpickler = _RestrictedUnpickler(data, archive.storage, allow_stubs)
        try:
            return unpickler.load()
        except CheckpointError:
            raise
        except Exception as exc:  # any malformed pickle (incl. RecursionError, MemoryError): one clear message
            raise UnsafeCheckpoint(
                f"checkpoint cannot be read: {path} ({type(exc).__name__}: {str(exc)[:160]})"
            ) from exc


# ---------------------------------------------------------------------------------------------
# NumPy object arrays (.npy files holding pickled dicts, e.g. the FASS dataset's masks)


class _PendingDtype(Stub):
    """``numpy.dtype(...)`` as pickled: resolved after loading from its code and byte order only."""


class _PendingArray(Stub):
    """``numpy.core.multiarray._reconstruct(...)``: its BUILD state holds shape, dtype and bytes."""


def _pending_array(*args: Any) -> _PendingArray:
    return _PendingArray()


def _pending_dtype(*args: Any) -> _PendingDtype:
    return _PendingDtype(*args)


def _resolve_dtype(pending: Any) -> Any:
    import numpy as np

    if not isinstance(pending, _PendingDtype) or not pending.args or not isinstance(pending.args[0], str):
        raise UnsafeCheckpoint("array with an invalid dtype")
    state = pending.state if isinstance(pending.state, tuple) else ()
    if len(state) > 4 and (state[2] is not None or state[3] is not None):
        raise UnsafeCheckpoint("structured or sub-array dtypes are not read")
    try:
        dtype = np.dtype(pending.args[0])
    except TypeError as exc:
        raise UnsafeCheckpoint(f"unknown dtype {pending.args[0]!r:.40}") from exc
    if len(state) > 1 and state[1] in ("<", ">"):
        dtype = dtype.newbyteorder(state[1])
    return dtype


def _resolve(value: Any, memo: dict[int, Any]) -> Any:
    """Replace pending arrays and dtypes by real NumPy objects, refusing inconsistent ones."""
    import numpy as np

    if id(value) in memo:
        return memo[id(value)]
    if isinstance(value, _PendingArray):
        state = value.state
        if not (isinstance(state, tuple) and len(state) == 5):
            raise UnsafeCheckpoint("array without a valid state")
        _, shape, dtype, fortran, raw = state
        shape, dtype = _ints(shape, "shape"), _resolve_dtype(dtype)
        if dtype.hasobject:
            if not isinstance(raw, list) or len(raw) != math.prod(shape):
                raise UnsafeCheckpoint("object array with the wrong number of items")
            result = np.empty(math.prod(shape), dtype=object)
            memo[id(value)] = result
            for index, item in enumerate(raw):
                result[index] = _resolve(item, memo)
            return result.reshape(shape, order="F" if fortran else "C")
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != math.prod(shape) * dtype.itemsize:
            raise UnsafeCheckpoint(f"array of shape {shape} and dtype {dtype} does not match its data")
        result = np.frombuffer(bytes(raw), dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()
    elif isinstance(value, _PendingDtype):
        result = _resolve_dtype(value)
    elif isinstance(value, Stub):
        raise UnsafeCheckpoint(f"array file holds a {value._ultrasam_name} object, which is not plain data")
    elif isinstance(value, dict):
        result = type(value)()
        memo[id(value)] = result
        for key, item in value.items():
            result[_resolve(key, memo)] = _resolve(item, memo)
        return result
    elif isinstance(value, list):
        result = []
        memo[id(value)] = result
        result.extend(_resolve(item, memo) for item in value)
        return result
    elif isinstance(value, tuple):
        result = tuple(_resolve(item, memo) for item in value)
    else:
        result = value
    memo[id(value)] = result
    return result


def _numpy_scalar(dtype: Any, raw: Any = b"") -> Any:
    import numpy as np

    dtype = _resolve_dtype(dtype)
    if dtype.hasobject or not isinstance(raw, bytes) or len(raw) != dtype.itemsize:
        raise UnsafeCheckpoint("invalid NumPy scalar")
    return np.frombuffer(raw, dtype=dtype)[0]


_NUMPY_ALLOWED: dict[tuple[str, str], Any] = {
    **{
        (module, "_reconstruct"): _Frozen("numpy _reconstruct", _pending_array)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    },
    **{
        (module, "scalar"): _Frozen("numpy scalar", _numpy_scalar)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    },
    ("numpy", "ndarray"): _Frozen("numpy.ndarray", _pending_array),
    ("numpy", "dtype"): _Frozen("numpy.dtype", _pending_dtype),
}


class _NumpyUnpickler(_RestrictedUnpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_ALLOWED:
            return _NUMPY_ALLOWED[(module, name)]
        if (module, name) == ("collections", "OrderedDict"):
            return _ALLOWED[(module, name)]
        raise UnsafeCheckpoint(f"array file names {module}.{name}, which is not plain data")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpoint("array file with persistent references")


def load_npy(path: str | Path) -> Any:
    """A ``.npy`` file; object arrays (pickled) are read by the restricted unpickler, never ``pickle``.

    Only NumPy arrays, scalars and plain containers are rebuilt; anything else is refused.
    """
    import numpy as np

    path = Path(path)
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            _shape, _fortran, dtype = reader(handle)
            if not dtype.hasobject:
                return np.load(path, allow_pickle=False)
            data = handle.read(MAX_PICKLE_BYTES + 1)
    except (OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if len(data) > MAX_PICKLE_BYTES:
        raise UnsafeCheckpoint(f"{path} holds more than {MAX_PICKLE_BYTES:,} bytes of pickled objects: refused")
    try:
        return _resolve(_NumpyUnpickler(data, _no_storages, allow_stubs=False).load(), {})
    except CheckpointError:
        raise
    except Exception as exc:
        raise UnsafeCheckpoint(f"{path} cannot be read: {type(exc).__name__}: {str(exc)[:160]}") from exc


def _no_storages(pid: tuple) -> _Storage:
    raise UnsafeCheckpoint("array file with persistent references")
