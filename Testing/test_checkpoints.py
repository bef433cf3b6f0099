"""Checkpoint files are data: malicious, truncated, foreign or mismatched files give one clear error."""

from __future__ import annotations

import os
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from ultrasam.checkpoints import detect_layout, load_state_dict, read_checkpoint
from ultrasam.errors import CheckpointError
from ultrasam.models import load_model, model_from_state_dict


class _CreatesFile:
    """Unpickling this calls ``os.system`` — the classic pickle exploit."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": OrderedDict(w=torch.zeros(2)), "payload": _CreatesFile(marker)}, path)
    # sanity: plain unpickling would run it
    with zipfile.ZipFile(path) as archive:
        raw = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert b"system" in raw
    container = read_checkpoint(path)
    assert not marker.exists()
    assert torch.equal(container["state_dict"]["w"], torch.zeros(2))


def test_malicious_legacy_pickle_is_refused_unread(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil_legacy.pth"
    torch.save({"payload": _CreatesFile(marker), "w": torch.ones(3)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy .pre-1.6. format"):
        load_state_dict(path)
    assert not marker.exists()


def test_mmengine_container_loads_without_mmengine_objects(tiny_checkpoint):
    container = read_checkpoint(tiny_checkpoint)
    assert set(container) >= {"meta", "state_dict", "message_hub"}
    hub = container["message_hub"]
    buffers = hub["log_scalars"]
    assert all(type(v).__module__.startswith("ultrasam_stub") for v in buffers.values())  # inert stand-ins
    assert len(container["state_dict"]) == 181


def test_truncated_checkpoint(tmp_path, tiny_checkpoint):
    data = tiny_checkpoint.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(cut)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b'{"weights": 1}', "JSON"),
        (b"\x89HDF\r\n\x1a\n" + b"0" * 64, "HDF5"),
        (b"\x89PNG\r\n\x1a\n", "PNG"),
    ],
)
def test_foreign_files(tmp_path, content, message):
    path = tmp_path / "weights.bin"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="folder"):
        load_model(tmp_path)


def test_zip_without_pickle(tmp_path):
    path = tmp_path / "archive.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match="without data.pkl"):
        load_model(path)


def test_unknown_layout(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3), "fc.bias": torch.zeros(4)}, path)
    with pytest.raises(CheckpointError, match="unrecognised checkpoint layout"):
        load_model(path)


def test_shape_mismatch_and_missing_keys_are_named(tiny_checkpoint):
    sd = load_state_dict(tiny_checkpoint)
    broken = OrderedDict(sd)
    broken["bbox_head.iou_prediction_head.layers.2.weight"] = torch.zeros(5, 256)
    with pytest.raises(CheckpointError, match="shape mismatch: .*iou_prediction_head.layers.2.weight"):
        model_from_state_dict(broken, fast=False)
    del broken["bbox_head.iou_prediction_head.layers.2.weight"]
    with pytest.raises(CheckpointError, match="missing: .*iou_prediction_head.layers.2.weight"):
        model_from_state_dict(broken, fast=False)


def test_adapter_checkpoints_are_refused_by_name(tiny_checkpoint):
    sd = OrderedDict(load_state_dict(tiny_checkpoint))
    sd["backbone.layers.0.space_adapter.layers.0.0.weight"] = torch.zeros(8, 64)
    with pytest.raises(CheckpointError, match="space_adapter"):
        model_from_state_dict(sd, fast=False)


def test_checkpoint_without_mask_prompt_disables_refinement(tiny_checkpoint):
    sd = OrderedDict((k, v) for k, v in load_state_dict(tiny_checkpoint).items() if "mask_downscaling" not in k)
    model = model_from_state_dict(sd, fast=False)
    assert model.spec.refine is False and model.spec.mask_prompt is False


def test_family_must_match_layout(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="not a litemedsam checkpoint"):
        load_model(tiny_checkpoint, family="litemedsam")
    with pytest.raises(CheckpointError, match="unknown model family"):
        load_model(tiny_checkpoint, family="resnet")


def test_layout_detection(tiny_checkpoint):
    from ultrasam.keymap import ultrasam_to_sam

    sd = load_state_dict(tiny_checkpoint)
    assert detect_layout(sd) == "mmdet_ultrasam"
    assert detect_layout(ultrasam_to_sam(sd)) == "sam_vit"


def test_sam_layout_roundtrip_loads_as_sam_family(tmp_path, tiny_checkpoint):
    """A checkpoint saved in segment_anything layout (e.g. our export) loads through the same call."""
    from ultrasam.keymap import ultrasam_to_sam

    path = tmp_path / "exported_sam.pth"
    torch.save(ultrasam_to_sam(load_state_dict(tiny_checkpoint)), path)
    model = load_model(path, fast=False)
    assert model.spec.family == "sam_vit_custom"  # width 64 is no official SAM size
    assert load_model(path, family="ultrasam", fast=False).spec.family == "ultrasam"


def test_exported_ultrasam_reopens_with_its_own_recipe(tmp_path, tiny_checkpoint, golden):
    """The family travels in the safetensors header: an exported UltraSam is not mistaken for SAM."""
    pytest.importorskip("ultrasam_training")
    from ultrasam.keymap import ultrasam_to_sam
    from ultrasam_training.train.export import save_state_dict

    original = load_model(tiny_checkpoint, fast=False)
    out = save_state_dict(
        ultrasam_to_sam(load_state_dict(tiny_checkpoint)), tmp_path / "tiny.safetensors", family="ultrasam"
    )
    reopened = load_model(out, fast=False)
    assert reopened.spec == original.spec and reopened.spec.family == "ultrasam"
    for key, tensor in original.sam.state_dict().items():
        assert torch.equal(reopened.sam.state_dict()[key], tensor), key
    assert load_model(out, family="sam_vit_b", fast=False).spec.family == "sam_vit_b"  # an explicit family wins
