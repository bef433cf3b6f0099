"""Hostile checkpoint files, generated here, through every path that opens a checkpoint.

Each crafted file tries to run code (a shell command that would create a marker file), to poison
the process (rewrite a function torch or this project uses for every later load), or to make
loading allocate or compute without bound. Every one must end in one clear ``CheckpointError``
(exit 1 from the CLI), create no marker, write no output, and leave later loads intact.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import time
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

import ultrasam.safe_unpickle as safe_unpickle
from ultrasam.checkpoints import load_state_dict, read_checkpoint
from ultrasam.cli import main
from ultrasam.errors import CheckpointError
from ultrasam.models import load_model

REPO_ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this runs ``touch <marker>`` — the classic pickle exploit."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _payload_pickle(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker), protocol=2)


# ---------------------------------------------------------------------------------------------
# Crafted files


def _legacy_file(path: Path, marker: Path, record: str) -> Path:
    """PyTorch's legacy format: magic, protocol, sys-info, object, storage-keys pickles, then data.

    ``record`` names the pickle replaced by the payload.
    """
    records = {
        "magic": pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2),
        "protocol": pickle.dumps(1001, protocol=2),
        "sys_info": pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2),
        "object": pickle.dumps({"w": 1}, protocol=2),
        "storage_keys": pickle.dumps([], protocol=2),
    }
    records[record] = _payload_pickle(marker)
    path.write_bytes(b"".join(records.values()))
    return path


def _zip_file(
    path: Path, data_pkl: bytes, storages: dict[str, bytes] | None = None, compression: int = zipfile.ZIP_STORED
) -> Path:
    """A torch zip checkpoint with a hand-made ``data.pkl``."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
        for key, data in (storages or {}).items():
            archive.writestr(f"archive/data/{key}", data)
    return path


def _nested_payload_file(path: Path, marker: Path, where: str) -> Path:
    tensors = OrderedDict(w=torch.ones(3))
    payload = _Payload(marker)
    content = {
        "top": {"state_dict": tensors, "evil": payload},
        "in_state_dict": {"state_dict": OrderedDict(w=torch.ones(3), evil=payload)},
        "deep": {"state_dict": tensors, "meta": {"a": [{"b": (payload,)}]}},
        "as_tensor_hook": {"state_dict": tensors, "hooks": OrderedDict(x=payload)},
    }[where]
    torch.save(content, path)
    return path


def _unicode(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _build_on_global(module: str, name: str, attribute: str = "__defaults__") -> bytes:
    """A pickle that BUILDs ``module.name`` with ``setattr(obj, attribute, (None, None, 'x'))``
    (the slot-state form), then returns an empty dict as if it were a checkpoint."""
    return (
        b"\x80\x02"
        + f"c{module}\n{name}\n".encode()
        + b"N}"
        + _unicode(attribute)
        + b"NN"
        + _unicode("x")
        + b"\x87s\x86"  # (None, {attr: (None, None, 'x')})
        + b"b0}."  # BUILD, POP, EMPTY_DICT, STOP
    )


def _expanded_view_file(path: Path) -> Path:
    """One float of storage viewed as 10^9 elements (stride 0): ~1 KB on disk, 4 GB if materialised."""
    torch.save({"state_dict": OrderedDict(w=torch.zeros(1).expand(10**9))}, path)
    return path


def _deflate_bomb(path: Path) -> Path:
    """A deflated data.pkl of 60 MB of NONE/POP opcodes: 60 KB on disk, 60 million pickle steps."""
    return _zip_file(path, b"\x80\x02" + b"N0" * 30_000_000 + b"}.", compression=zipfile.ZIP_DEFLATED)


# ---------------------------------------------------------------------------------------------
# The load paths a checkpoint reaches


def _weights_of(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.sam.state_dict().items()}


LIBRARY_PATHS = {
    "read_checkpoint": lambda p: read_checkpoint(p),
    "load_state_dict": lambda p: load_state_dict(p),
    "load_model": lambda p: load_model(p),
}


def _cli(args, capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# 1. Legacy format: every record, every path


@pytest.mark.parametrize("record", ["magic", "protocol", "sys_info", "object", "storage_keys"])
@pytest.mark.parametrize("load", sorted(LIBRARY_PATHS))
def test_legacy_records_never_run_code(tmp_path, record, load):
    marker = tmp_path / "pwned"
    path = _legacy_file(tmp_path / "legacy.pth", marker, record)
    with pytest.raises(CheckpointError, match="legacy"):
        LIBRARY_PATHS[load](path)
    assert not marker.exists()


def test_legacy_file_through_torch_would_run_code(tmp_path):
    """The crafted file is live: an unrestricted unpickle of its first record runs the payload."""
    marker = tmp_path / "pwned"
    path = _legacy_file(tmp_path / "legacy.pth", marker, "magic")
    pickle.load(io.BytesIO(path.read_bytes()))
    assert marker.exists()


# ---------------------------------------------------------------------------------------------
# 2. Zip format with payloads anywhere


@pytest.mark.parametrize("where", ["top", "in_state_dict", "deep", "as_tensor_hook"])
def test_zip_payloads_become_inert_stubs(tmp_path, where):
    marker = tmp_path / "pwned"
    path = _nested_payload_file(tmp_path / "evil.pth", marker, where)
    container = read_checkpoint(path)
    assert not marker.exists()
    assert torch.equal(container["state_dict"]["w"], torch.ones(3))
    with pytest.raises(CheckpointError):
        load_model(path)  # no model in it: refused by name, still nothing run
    assert not marker.exists()


def test_plain_data_mode_refuses_any_object(tmp_path):
    marker = tmp_path / "pwned"
    path = _nested_payload_file(tmp_path / "evil.pth", marker, "deep")
    with pytest.raises(CheckpointError, match="posix.system|os.system|not plain data"):
        read_checkpoint(path, allow_stubs=False)
    assert not marker.exists()


@pytest.mark.parametrize(
    "opcode_pickle",
    [
        # getattr(stub, 'system')(...): the stub's attribute is another stub, calling it runs nothing
        b"\x80\x02cbuiltins\ngetattr\ncos\nsystem\n"
        + _unicode("__call__")
        + b"\x86R"
        + _unicode("touch MARKER")
        + b"\x85R0}.",
        # eval/exec by name
        b"\x80\x02cbuiltins\neval\n" + _unicode("__import__('os').system('touch MARKER')") + b"\x85R0}.",
        # protocol 4 framing + STACK_GLOBAL
        pickle.dumps(_Payload(Path("MARKER")), protocol=4)[:-1] + b"0}.",
    ],
)
def test_hand_made_pickles_run_nothing(tmp_path, opcode_pickle):
    marker = tmp_path / "pwned"
    data = opcode_pickle.replace(b"MARKER", str(marker).encode())
    # fix BINUNICODE lengths changed by the replacement
    data = data.replace(
        struct.pack("<I", len("touch MARKER")) + b"touch " + str(marker).encode(),
        struct.pack("<I", len(f"touch {marker}")) + f"touch {marker}".encode(),
    )
    path = _zip_file(tmp_path / "evil.pth", data)
    try:
        read_checkpoint(path)
    except CheckpointError:
        pass
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# 3. Poisoning the process through BUILD on allowed objects


@pytest.mark.parametrize(
    "module, name, attribute",
    [
        ("torch._utils", "_rebuild_tensor_v2", "__defaults__"),
        ("torch._utils", "_rebuild_parameter", "__code__"),
        ("collections", "OrderedDict", "__init__"),
        ("torch", "Size", "__new__"),
        ("torch", "float32", "is_floating_point"),
        ("torch", "FloatStorage", "dtype"),
        ("builtins", "getattr", "__defaults__"),
    ],
)
def test_build_on_allowed_globals_is_refused_and_changes_nothing(tmp_path, module, name, attribute):
    reference = tmp_path / "reference.pth"
    torch.save(OrderedDict(w=torch.arange(6, dtype=torch.float32)), reference)
    defaults_before = torch._utils._rebuild_tensor_v2.__defaults__
    path = _zip_file(tmp_path / "poison.pth", _build_on_global(module, name, attribute))
    with pytest.raises(CheckpointError, match="set the state|modify|tries to set"):
        read_checkpoint(path)
    assert torch._utils._rebuild_tensor_v2.__defaults__ == defaults_before
    # every later load, ours and torch's own, still returns the true weights
    assert torch.equal(load_state_dict(reference)["w"], torch.arange(6, dtype=torch.float32))
    assert torch.equal(torch.load(reference, weights_only=True)["w"], torch.arange(6, dtype=torch.float32))


def test_build_on_a_stub_is_harmless(tmp_path):
    """mmengine containers BUILD their HistoryBuffer objects: on stubs that must still load."""
    data = b"\x80\x02}" + _unicode("hub") + b"cmmengine.logging\nHistoryBuffer\n)\x81" + b"K\x05b" + b"s."
    container = read_checkpoint(_zip_file(tmp_path / "stub.pth", data))
    assert type(container["hub"]).__module__.startswith("ultrasam_stub")


def test_genuine_mmdet_checkpoint_still_loads(tiny_checkpoint):
    model = load_model(tiny_checkpoint)
    assert model.spec.family == "ultrasam"


# ---------------------------------------------------------------------------------------------
# 4. Bounded memory and work


def test_expanded_view_is_refused_before_materialising(tmp_path):
    path = _expanded_view_file(tmp_path / "view.pth")
    assert path.stat().st_size < 4096
    with pytest.raises(CheckpointError, match="repeats elements|does not fit"):
        read_checkpoint(path)


def _edited(path: Path, entry_filter, edit) -> Path:
    """Rewrite ``path``'s first archive entry whose name passes ``entry_filter`` with ``edit(bytes)``."""
    with zipfile.ZipFile(path) as archive:
        names = {n: archive.read(n) for n in archive.namelist()}
    key = next(n for n in names if entry_filter(n))
    names[key] = edit(names[key])
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in names.items():
            archive.writestr(name, data)
    return path


def test_view_past_its_storage_is_refused(tmp_path):
    path = tmp_path / "overflow.pth"
    torch.save({"w": torch.zeros(4)}, path)
    # size (4,) -> (64,) over a 4-float storage
    _edited(path, lambda n: n.endswith("data.pkl"), lambda data: data.replace(b"K\x04\x85", b"K\x40\x85"))
    with pytest.raises(CheckpointError, match="does not fit"):
        read_checkpoint(path)


def test_declared_storage_larger_than_its_entry_is_refused(tmp_path):
    path = tmp_path / "short.pth"
    torch.save({"w": torch.zeros(1000)}, path)
    _edited(path, lambda n: "/data/" in n, lambda data: data[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(path)


def test_deflate_bomb_is_refused_before_inflating(tmp_path):
    path = _deflate_bomb(tmp_path / "bomb.pth")
    assert path.stat().st_size < 1_000_000
    start = time.process_time()
    with pytest.raises(CheckpointError, match="expands"):
        read_checkpoint(path)
    assert time.process_time() - start < 1


@pytest.mark.timeout(60)
def test_pickle_work_is_bounded(tmp_path):
    """10 MB of one-byte opcodes (stored, so no ratio to catch): stopped after the opcode budget."""
    path = _zip_file(tmp_path / "ops.pth", b"\x80\x02" + b"N0" * 5_000_000 + b"}.")
    start = time.process_time()
    with pytest.raises(CheckpointError, match="pickle steps"):
        read_checkpoint(path)
    assert time.process_time() - start < 20


def test_oversized_pickle_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(safe_unpickle, "MAX_PICKLE_BYTES", 1000)
    path = _zip_file(tmp_path / "big.pth", b"\x80\x02" + b"N0" * 1000 + b"}.", compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(CheckpointError, match="more than the 1,000"):
        read_checkpoint(path)


# ---------------------------------------------------------------------------------------------
# 5. Weights that load but are not numbers


def test_nan_weights_are_refused_and_not_exported(tmp_path, capsys, tiny_checkpoint):
    pytest.importorskip("ultrasam_training")
    state = load_state_dict(tiny_checkpoint)
    key = next(k for k in state if k.endswith("weight") and state[k].is_floating_point())
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    path = tmp_path / "nan.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError, match="NaN or infinite weights"):
        load_model(path)
    out = tmp_path / "exported.safetensors"
    code, err = _cli(["export", path, out], capsys)
    assert code == 1 and "NaN or infinite" in err
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


# ---------------------------------------------------------------------------------------------
# 6. Every command that opens a checkpoint


@pytest.fixture
def hostile_files(tmp_path):
    marker = tmp_path / "pwned"
    files = {f"legacy_{r}": _legacy_file(tmp_path / f"legacy_{r}.pth", marker, r) for r in ("magic", "storage_keys")}
    files["zip_payload"] = _nested_payload_file(tmp_path / "zip_payload.pth", marker, "top")
    files["poison"] = _zip_file(tmp_path / "poison.pth", _build_on_global("torch._utils", "_rebuild_tensor_v2"))
    files["view"] = _expanded_view_file(tmp_path / "view.pth")
    return marker, files


def _assert_clean(code: int, err: str, marker: Path) -> None:
    assert code == 1, err
    assert "error:" in err and "Traceback" not in err
    assert not marker.exists()


def test_segment_command_refuses_hostile_checkpoints(tmp_path, capsys, hostile_files, data_dir):
    marker, files = hostile_files
    image = next((data_dir / "busi/Dataset_BUSI_with_GT/benign").glob("*).png"))
    for name, path in files.items():
        out = tmp_path / f"{name}.png"
        code, err = _cli(["segment", image, "--box", 10, 10, 60, 60, "--checkpoint", path, "--out", out], capsys)
        _assert_clean(code, err, marker)
        assert not out.exists(), name


def test_export_refuses_hostile_checkpoints(tmp_path, capsys, hostile_files):
    pytest.importorskip("ultrasam_training")
    marker, files = hostile_files
    for name, path in files.items():
        out = tmp_path / f"{name}.safetensors"
        code, err = _cli(["export", path, out], capsys)
        _assert_clean(code, err, marker)
        assert not out.exists(), name


def test_evaluate_and_test_refuse_hostile_checkpoints(tmp_path, capsys, hostile_files, data_dir):
    pytest.importorskip("ultrasam_training")
    marker, files = hostile_files
    splits = REPO_ROOT / "work_dirs/data"
    for name in ("legacy_magic", "poison"):
        out = tmp_path / f"eval_{name}"
        code, err = _cli(
            [
                "evaluate",
                "--checkpoint",
                files[name],
                "--shared-data",
                data_dir,
                "--splits-dir",
                splits,
                "--limit",
                1,
                "--out",
                out,
            ],
            capsys,
        )
        _assert_clean(code, err, marker)
        assert not out.exists() or not any(out.iterdir())
        code, err = _cli(
            [
                "test",
                "smoke",
                "--checkpoint",
                files[name],
                "--max-images",
                1,
                "--out",
                tmp_path / f"t_{name}",
                "--cfg-options",
                f"evaluation.shared_data_root={data_dir}",
                f"evaluation.splits_root={splits}",
            ],
            capsys,
        )
        _assert_clean(code, err, marker)


def test_train_refuses_hostile_init_and_load_from(tmp_path, capsys, hostile_files, data_dir):
    pytest.importorskip("ultrasam_training")
    marker, files = hostile_files
    for option in ("model.init_checkpoint", "load_from"):
        for name in ("legacy_magic", "poison"):
            code, err = _cli(
                [
                    "train",
                    "smoke",
                    "--work-dir",
                    tmp_path / f"run_{name}",
                    "--cfg-options",
                    f"{option}={files[name]}",
                    "train_cfg.max_iters=1",
                ],
                capsys,
            )
            _assert_clean(code, err, marker)
            assert "legacy" in err or "set the state" in err


def test_resume_refuses_a_pointer_outside_the_work_dir(tmp_path, capsys, hostile_files):
    pytest.importorskip("ultrasam_training")
    marker, files = hostile_files
    work = tmp_path / "run"
    work.mkdir()
    (work / "last_checkpoint").write_text(str(files["zip_payload"]))
    code, err = _cli(["train", "smoke", "--work-dir", work, "--resume"], capsys)
    _assert_clean(code, err, marker)
    assert "outside the work dir" in err
    (work / "last_checkpoint").write_text("../zip_payload.pth")
    code, err = _cli(["train", "smoke", "--work-dir", work, "--resume"], capsys)
    _assert_clean(code, err, marker)
    assert "outside the work dir" in err
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ


def test_resume_refuses_a_tampered_iteration_checkpoint(tmp_path, capsys, hostile_files, data_dir):
    pytest.importorskip("ultrasam_training")
    marker, files = hostile_files
    work = tmp_path / "run"
    work.mkdir()
    tampered = work / "iter_6.pth"
    tampered.write_bytes(files["zip_payload"].read_bytes())
    (work / "last_checkpoint").write_text(str(tampered))
    code, err = _cli(
        [
            "train",
            "smoke",
            "--work-dir",
            work,
            "--resume",
            "--cfg-options",
            f"train_dataloader.dataset.shared_data_root={data_dir}",
        ],
        capsys,
    )
    _assert_clean(code, err, marker)
    assert "not plain data" in err
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ


def test_resume_names_missing_training_state(tmp_path, capsys, data_dir):
    """A plain-data checkpoint without mmengine's meta/message hub: one message, not an AssertionError."""
    pytest.importorskip("ultrasam_training")
    work = tmp_path / "run"
    work.mkdir()
    torch.save(
        {"meta": {"epoch": 0, "iter": 3}, "state_dict": OrderedDict(), "message_hub": {"log_scalars": {}}},
        work / "iter_3.pth",
    )
    (work / "last_checkpoint").write_text(str(work / "iter_3.pth"))
    code, err = _cli(["train", "smoke", "--work-dir", work, "--resume"], capsys)
    assert code == 1 and "malformed training state" in err and "Traceback" not in err
