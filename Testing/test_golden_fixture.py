"""The original UltraSam implementation's exact outputs (../shared/fixtures), reproduced through
the public API: checkpoint loading, the key map, preprocessing, both decoder passes, selection
and post-processing. Tolerances are those of TARGETS.md."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ultrasam.models import load_model
from ultrasam.predictor import Predictor
from ultrasam.transforms import mask_to_box, resize_image, to_rgb_uint8

CASES = ["00", "01", "02", "03", "04", "05"]
TOL = 1e-4


def _read_rgb(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.fixture(scope="module", params=[False, True], ids=["reference_attention", "fast_attention"])
def predictor(request, tiny_checkpoint) -> Predictor:
    torch.manual_seed(0)
    return Predictor(load_model(tiny_checkpoint, fast=request.param))


@pytest.fixture(scope="module")
def reference_predictor(tiny_checkpoint) -> Predictor:
    return Predictor(load_model(tiny_checkpoint, fast=False))


def _case(golden, case: str):
    return lambda name: golden[f"case{case}_{name}"]


def _image(data_dir: Path, golden, case: str) -> np.ndarray:
    name = str(golden[f"case{case}_image_name"])
    return _read_rgb(data_dir / "mmotu_sample" / "sample_images" / name)


def _predict(predictor: Predictor, k):
    if str(k("prompt_type")) == "box":
        return predictor.predict(box=k("prompt_orig"))
    return predictor.predict(points=k("prompt_orig")[None])


@pytest.mark.parametrize("case", CASES)
def test_resize_is_bit_exact(golden, data_dir, case):
    k = _case(golden, case)
    from ultrasam.models.spec import FAMILY_SPECS

    resized = resize_image(to_rgb_uint8(_image(data_dir, golden, case)), FAMILY_SPECS["ultrasam"])
    assert resized.shape[:2] == tuple(k("img_shape"))
    bgr = np.ascontiguousarray(resized[..., ::-1])
    assert hashlib.sha256(bgr.tobytes()).hexdigest() == str(k("resized_bgr_sha256"))


@pytest.mark.parametrize("case", CASES)
def test_reference_path_reproduces_every_intermediate(reference_predictor, golden, data_dir, case):
    k = _case(golden, case)
    name = str(k("image_name"))
    reference_predictor.set_image(_image(data_dir, golden, case))
    np.testing.assert_allclose(reference_predictor.geometry.scale_xy, k("scale_factor"), rtol=0, atol=1e-12)
    embedding = reference_predictor.embedding[0].numpy()
    assert np.abs(embedding - golden[f"image_embedding__{name[:-4]}"]).max() <= TOL

    pred = _predict(reference_predictor, k)
    first, second = pred.passes
    prompt = first.boxes[0] if str(k("prompt_type")) == "box" else first.points[0, 0]
    np.testing.assert_allclose(prompt, k("prompt_model_pass1"), atol=1e-4)
    assert np.abs(first.low_res_logits[0, 0] - k("pass1_low_res_logits")).max() <= TOL
    assert np.abs(first.iou[0] - k("pass1_iou")).max() <= TOL
    np.testing.assert_allclose(second.boxes[0], k("box_model_pass2"), atol=1e-4)
    assert np.abs(second.low_res_logits[0] - k("pass2_low_res_logits")).max() <= TOL
    assert np.abs(second.iou[0] - k("pass2_iou")).max() <= TOL
    assert int(np.argmax(second.iou[0])) == int(k("final_index"))
    assert np.abs(pred.logits - k("final_low_res_logits")).max() <= TOL
    assert abs(pred.score - float(k("final_score"))) <= TOL
    np.testing.assert_array_equal(pred.mask, k("final_mask"))
    np.testing.assert_array_equal(mask_to_box(pred.mask), k("final_bbox_orig"))


@pytest.mark.parametrize("case", ["03", "04", "05"])
def test_point_prompt_is_replaced_by_pass1_box(reference_predictor, golden, data_dir, case):
    k = _case(golden, case)
    reference_predictor.set_image(_image(data_dir, golden, case))
    pred = _predict(reference_predictor, k)
    pass1_mask = pred.passes[0].low_res_logits  # the predictor's own pass-1 mask box must be the original's
    from ultrasam.transforms import masks_to_original

    mask1 = masks_to_original(
        torch.from_numpy(pass1_mask), reference_predictor.geometry, reference_predictor.model.spec
    )
    np.testing.assert_array_equal(mask_to_box(mask1[0, 0].numpy()), k("pass1_mask_bbox_orig"))
    assert pred.passes[1].points is None  # the point is dropped in pass 2


@pytest.mark.parametrize("case", CASES)
def test_fast_path_within_fast_tolerance(predictor, golden, data_dir, case):
    k = _case(golden, case)
    predictor.set_image(_image(data_dir, golden, case))
    pred = _predict(predictor, k)
    assert np.abs(pred.logits - k("final_low_res_logits")).max() <= 1e-3
    assert int(np.argmax(pred.passes[1].iou[0])) == int(k("final_index"))
    differing = (pred.mask != k("final_mask")).mean()
    assert differing <= 0.001


def test_vitb_key_manifest_maps_completely(fixtures_dir):
    """All 293 UltraSam ViT-b tensors map onto the 314 keys of segment_anything's ViT-b Sam."""
    from segment_anything import sam_model_registry

    from ultrasam.keymap import ultrasam_to_sam

    manifest = json.loads((fixtures_dir / "ultrasam_vitb_keys.json").read_text())
    assert manifest["num_tensors"] == 293
    fake = {entry["key"]: torch.zeros(entry["shape"]) for entry in manifest["keys"]}
    mapped = ultrasam_to_sam(fake)
    reference = sam_model_registry["vit_b"]().state_dict()
    assert len(reference) == 314
    assert set(mapped) == set(reference)
    for key, tensor in mapped.items():
        assert tuple(tensor.shape) == tuple(reference[key].shape), key


def test_label_embedding_rows_and_bias_chunks(tiny_checkpoint):
    """Row order of label_embedding and q,k,v order of in_proj_bias, checked tensor by tensor."""
    from ultrasam.checkpoints import load_state_dict
    from ultrasam.keymap import ultrasam_to_sam

    raw = load_state_dict(tiny_checkpoint)
    mapped = ultrasam_to_sam(raw)
    rows = raw["prompt_encoder.label_encoder.label_embedding.weight"]
    assert torch.equal(mapped["prompt_encoder.no_mask_embed.weight"][0], rows[0])
    assert torch.equal(mapped["prompt_encoder.point_embeddings.0.weight"][0], rows[1])  # negative point
    assert torch.equal(mapped["prompt_encoder.point_embeddings.1.weight"][0], rows[2])  # positive point
    assert torch.equal(mapped["mask_decoder.mask_tokens.weight"], rows[6:10])
    assert torch.equal(mapped["mask_decoder.iou_token.weight"][0], rows[10])
    bias = raw["decoder.layers.0.cross_attn_token_to_image.attn.in_proj_bias"]
    assert torch.equal(mapped["mask_decoder.transformer.layers.0.cross_attn_token_to_image.k_proj.bias"], bias[128:256])
    lin2 = raw["decoder.layers.1.mlp.layers.1.weight"]
    assert torch.equal(mapped["mask_decoder.transformer.layers.1.mlp.lin2.weight"], lin2 * 0.5)
