"""One door to a model: every family round-trips export → open with its own recipe and identical outputs.

Sources are the golden UltraSam fixture (the original implementation's checkpoint, seen as the
UltraSam, SAM and MedSAM families) and the real LiteMedSAM weights; the outputs compared are the
predictor's logits on a real MMOTU frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ultrasam.checkpoints import load_state_dict
from ultrasam.errors import CheckpointError, UltraSamError
from ultrasam.keymap import ultrasam_to_sam
from ultrasam.models import DEFAULT_WEIGHTS, open_model, resolve_device
from ultrasam.predictor import Predictor

pytest.importorskip("ultrasam_training")
from ultrasam_training.train.export import export_checkpoint, save_state_dict  # noqa: E402


def _frame(data_dir: Path) -> np.ndarray:
    import SimpleITK as sitk

    path = data_dir / "mmotu_sample" / "sample_images" / "test.MMOTU_2d__00002.png"
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _outputs(model, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    predictor = Predictor(model)
    predictor.set_image(image)
    h, w = image.shape[:2]
    box = predictor.predict(box=np.array([w * 0.25, h * 0.25, w * 0.7, h * 0.75]))
    point = predictor.predict(points=np.array([[w * 0.5, h * 0.5]]), labels=np.array([1]))
    return box.logits, point.logits


@pytest.fixture(scope="module")
def sources(tiny_checkpoint, litemedsam_checkpoint, tmp_path_factory):
    """family → a file in that family's native layout."""
    folder = tmp_path_factory.mktemp("sources")
    sam_layout = folder / "tiny_sam_layout.pth"
    torch.save(ultrasam_to_sam(load_state_dict(tiny_checkpoint)), sam_layout)
    return {
        "ultrasam": tiny_checkpoint,
        "sam_vit_b": sam_layout,
        "medsam": sam_layout,
        "litemedsam": litemedsam_checkpoint,
    }


@pytest.mark.parametrize("family", ["ultrasam", "sam_vit_b", "medsam", "litemedsam"])
def test_every_family_round_trips_export_and_open(family, sources, data_dir, tmp_path):
    original = open_model(sources[family], family=family, device="cpu", fast=False)
    exported = save_state_dict(original.sam.state_dict(), tmp_path / f"{family}.safetensors", family=family)
    reopened = open_model(exported, device="cpu", fast=False)  # no family given: the file says it
    assert reopened.spec == original.spec
    image = _frame(data_dir)
    for before, after in zip(_outputs(original, image), _outputs(reopened, image)):
        np.testing.assert_array_equal(before, after)


def test_an_exported_ultrasam_is_not_read_as_sam(sources, tmp_path):
    """The bug that motivated the door: a ViT UltraSam export used to reopen with SAM's recipe."""
    exported = save_state_dict(
        ultrasam_to_sam(load_state_dict(sources["ultrasam"])), tmp_path / "u.safetensors", family="ultrasam"
    )
    model = open_model(exported, device="cpu")
    assert model.spec.family == "ultrasam" and model.spec.resize == "truncate" and model.spec.refine
    assert model.sam.mask_decoder.transformer.layers[0].norm3.eps == pytest.approx(2.5e-6)


def test_mmengine_training_container_opens_with_its_recorded_family(sources, tmp_path):
    container = {
        "meta": {"iter": 3, "ultrasam_family": "medsam"},
        "state_dict": {
            **ultrasam_to_sam(load_state_dict(sources["ultrasam"])),
            "data_preprocessor.mean": torch.zeros(3),
        },
    }
    path = tmp_path / "iter_3.pth"
    torch.save(container, path)
    assert open_model(path, device="cpu").spec.family == "medsam"
    assert open_model(container, device="cpu").spec.family == "medsam"  # in memory too
    out = export_checkpoint(path, tmp_path / "exported.safetensors")
    assert open_model(out, device="cpu").spec.family == "medsam"


def test_registry_names_and_the_default(litemedsam_checkpoint):
    assert open_model(device="cpu").spec.family == DEFAULT_WEIGHTS == "ultrasam_lite"
    assert open_model("litemedsam", device="cpu").source == str(litemedsam_checkpoint)
    with pytest.raises(CheckpointError, match="neither a checkpoint file nor a registered weights name"):
        open_model("no_such_model", device="cpu")


def test_model_spec_says_which_prompts_the_weights_know(sources):
    lite = open_model(sources["litemedsam"], device="cpu")
    assert lite.spec.supports("box") and not lite.spec.supports("point")
    assert open_model(sources["ultrasam"], device="cpu").spec.supports("point")


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu") or resolve_device("auto").type == "mps"
        with pytest.raises(UltraSamError, match="no CUDA GPU"):
            resolve_device("cuda:0")
    with pytest.raises(UltraSamError, match="unknown device"):
        resolve_device("tpu")
