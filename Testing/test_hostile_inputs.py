"""Hostile inputs: each must end in one clear library error, exit code 1 and no output written.

Every file is crafted here (nothing binary is committed) and kept tiny: a PNG that *declares*
60000x60000 pixels holds a few bytes of pixel data; truncated files are valid files cut short.
No test loads a model: images and prompts are refused before the checkpoint would be read, so
the CLI cases name a checkpoint that does not exist (reaching it would be a failure too).
"""

from __future__ import annotations

import io
import json
import re
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from ultrasam.cli import main
from ultrasam.errors import ImageError, PromptError
from ultrasam.frames import frames_along
from ultrasam.markups import (
    MAX_CONTROL_POINTS,
    MAX_MARKUPS_FILE_BYTES,
    MarkupPoint,
    Markups,
    read_markups,
    read_prompt_files,
)
from ultrasam.predictor import Predictor
from ultrasam.prompts import MAX_POINTS_PER_FRAME, FramePrompts, pixel_prompts, prompts_from_markups
from ultrasam.readers import MAX_FILE_VOXELS, MAX_FRAME_PIXELS, load_stack
from ultrasam.volume import Volume

REPO_ROOT = Path(__file__).resolve().parents[1]
SETS_TRUNCATED = re.compile(r"LOAD_TRUNCATED_IMAGES['\"]?\s*[=,]\s*(True|1)")  # x = True, or setattr(..., True)


# ---- helpers ---------------------------------------------------------------------------------------
def run_cli(capsys, *args) -> tuple[int, str]:
    """Run ``ultrasam`` in-process; the exit code and what it printed on stderr."""
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def model_args(tmp_path: Path) -> list:
    """A checkpoint that does not exist: every case here must fail before loading a model."""
    return ["--checkpoint", tmp_path / "never-loaded.pth"]


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def with_png_size(data: bytes, width: int, height: int) -> bytes:
    """The same PNG with the IHDR declaring ``width x height`` (CRC recomputed, IDAT untouched)."""
    assert data[12:16] == b"IHDR"
    body = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:8] + data[8:12] + body + struct.pack(">I", zlib.crc32(body)) + data[33:]


def small_png(tmp_path: Path, name: str = "small.png") -> Path:
    path = tmp_path / name
    path.write_bytes(png_bytes(np.random.default_rng(0).integers(0, 256, (32, 40), dtype=np.uint8)))
    return path


def truncated(tmp_path: Path, fmt: str, suffix: str) -> Path:
    """A valid noisy RGB image in ``fmt``, cut to 60 % of its bytes."""
    rgb = np.random.default_rng(1).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, fmt)
    data = buffer.getvalue()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) * 6 // 10])
    return path


def tiny_volume(tmp_path: Path, spacing: float = 1.0) -> Path:
    path = tmp_path / "vol.nrrd"
    volume = Volume(np.zeros((6, 8, 10), np.uint8), spacing=(spacing,) * 3)
    sitk.WriteImage(volume.to_sitk(), str(path))
    return path


def write_json(path: Path, document) -> Path:
    path.write_text(json.dumps(document))
    return path


def point_list(control_points, **extra) -> dict:
    return {
        "markups": [
            {"type": "Fiducial", "name": "F", "coordinateSystem": "LPS", "controlPoints": control_points, **extra}
        ]
    }


def roi_markup(**fields) -> dict:
    roi = {
        "type": "ROI",
        "name": "R",
        "coordinateSystem": "LPS",
        "center": [1.0, 1.0, 1.0],
        "size": [2.0, 2.0, 2.0],
        "orientation": [1, 0, 0, 0, 1, 0, 0, 0, 1],
    }
    roi.update(fields)
    return {"markups": [roi]}


# ---- images: decompression bombs --------------------------------------------------------------------
def test_png_declaring_60000_squared_pixels_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(with_png_size(png_bytes(np.zeros((4, 4), np.uint8)), 60000, 60000))
    assert path.stat().st_size < 1000
    start = time.perf_counter()
    with pytest.raises(ImageError, match=r"too large: 60000x60000 pixels .*limit is 150,000,000 pixels"):
        load_stack(path)
    assert time.perf_counter() - start < 3


def test_gif_bomb_is_refused_on_the_pillow_path(tmp_path):
    """GIF is read by Pillow (ITK cannot): the size is checked there too, warnings or not."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(buffer, "GIF")
    data = bytearray(buffer.getvalue())
    for width, height in ((12500, 12500), (65535, 65535)):  # above our limit; above Pillow's own
        data[6:10] = struct.pack("<HH", width, height)
        path = tmp_path / f"bomb{width}.gif"
        path.write_bytes(bytes(data))
        with pytest.raises(ImageError, match=rf"{path.name} is too large.*limit is 150,000,000 pixels"):
            load_stack(path)


def test_volume_header_declaring_too_many_voxels_is_refused(tmp_path):
    path = tmp_path / "huge.nrrd"
    path.write_bytes(b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 4000 4000 4000\nencoding: raw\n\n" + bytes(64))
    with pytest.raises(ImageError, match=r"too large: 4000x4000x4000 voxels .*limit is 1,000,000,000 voxels"):
        load_stack(path)
    assert MAX_FILE_VOXELS == 1_000_000_000 and MAX_FRAME_PIXELS == 150_000_000


def test_dicom_declaring_65535_squared_frames_is_refused(tmp_path):
    path = tmp_path / "cine.dcm"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 4, 6), np.uint8)), str(path))
    data = bytearray(path.read_bytes())
    for tag in (b"\x28\x00\x10\x00", b"\x28\x00\x11\x00"):  # Rows, Columns (implicit VR, US)
        at = data.find(tag)
        assert at > 0 and data[at + 4 : at + 8] == b"\x02\x00\x00\x00"
        data[at + 8 : at + 10] = b"\xff\xff"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"too large: 65535x65535x2 voxels"):
        load_stack(path)


def test_cli_segment_refuses_a_png_bomb_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "bomb.png"
    path.write_bytes(with_png_size(png_bytes(np.zeros((4, 4), np.uint8)), 60000, 60000))
    out = tmp_path / "mask.png"
    code, err = run_cli(capsys, "segment", path, "--box", 0, 0, 5, 5, *model_args(tmp_path), "--out", out)
    assert code == 1
    assert "ultrasam segment: error:" in err and "60000x60000" in err and "150,000,000" in err
    assert err.count("error:") == 1
    assert not out.exists()


# ---- images: truncated files ------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, suffix", [("JPEG", ".jpg"), ("BMP", ".bmp"), ("PNG", ".png")])
def test_truncated_raster_is_refused(tmp_path, fmt, suffix):
    path = truncated(tmp_path, fmt, suffix)
    with pytest.raises(ImageError, match=rf"{path.name}.* truncated or corrupt"):
        load_stack(path)


def test_cli_segment_refuses_a_truncated_jpeg_and_writes_nothing(tmp_path, capsys):
    path = truncated(tmp_path, "JPEG", ".jpg")
    out = tmp_path / "mask.png"
    code, err = run_cli(capsys, "segment", path, "--box", 0, 0, 5, 5, *model_args(tmp_path), "--out", out)
    assert code == 1 and "ultrasam segment: error:" in err and "truncated or corrupt" in err
    assert not out.exists()


def test_a_complete_jpeg_still_reads(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "whole.jpg")
    assert load_stack(tmp_path / "whole.jpg").frame_shape == (64, 80)


def test_nothing_enables_pillows_truncated_image_loading():
    """A global ``LOAD_TRUNCATED_IMAGES = True`` would silently accept cut files everywhere."""
    from PIL import ImageFile

    import ultrasam.cli  # noqa: F401
    import ultrasam.outputs  # noqa: F401
    import ultrasam.pipeline  # noqa: F401

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for folder in ("UltraSamLib", "SlicerUltraSam", "Training")
        for path in (REPO_ROOT / folder).rglob("*.py")
        if SETS_TRUNCATED.search(path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert offenders == []


# ---- pixel prompts ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--box", "0", "0", "inf", "inf"], r"box \[0, 0, inf, inf\] on frame 0 has non-finite coordinates"),
        (["--box", "nan", "0", "5", "5"], r"box \[nan, 0, 5, 5\] on frame 0 has non-finite coordinates"),
        (["--point", "3", "nan"], r"point 1 \(3, nan\) on frame 0 has non-finite coordinates"),
        (["--point", "3", "3", "--negative", "inf", "2"], r"point 2 \(inf, 2\) on frame 0 has non-finite coordinates"),
    ],
)
def test_cli_refuses_non_finite_prompts(tmp_path, capsys, flags, message):
    out = tmp_path / "mask.png"
    code, err = run_cli(capsys, "segment", small_png(tmp_path), *flags, *model_args(tmp_path), "--out", out)
    assert code == 1
    assert "ultrasam segment: error:" in err
    assert re.search(message, err), err
    assert not out.exists()


def test_cli_refuses_too_many_points(tmp_path, capsys):
    out = tmp_path / "mask.png"
    points = [a for n in range(MAX_POINTS_PER_FRAME + 1) for a in ("--point", str(n % 40), str(n % 32))]
    code, err = run_cli(capsys, "segment", small_png(tmp_path), *points, *model_args(tmp_path), "--out", out)
    assert code == 1
    assert f"{MAX_POINTS_PER_FRAME + 1} points on frame 0" in err and f"at most {MAX_POINTS_PER_FRAME}" in err
    assert not out.exists()


def test_library_prompt_validation_refuses_non_finite_and_too_many_points():
    with pytest.raises(PromptError, match="box .* non-finite"):
        pixel_prompts((20, 30), box=[0, 0, np.inf, np.inf])
    with pytest.raises(PromptError, match=r"point 1 \(nan, 1\) on frame 0 has non-finite"):
        FramePrompts(0, [[np.nan, 1.0]], [1])
    many = np.zeros((MAX_POINTS_PER_FRAME + 1, 2))
    with pytest.raises(PromptError, match=f"at most {MAX_POINTS_PER_FRAME} points"):
        pixel_prompts((20, 30), points=many)
    assert MAX_POINTS_PER_FRAME == 1000


def test_predictor_prompt_check_caps_points_and_keeps_its_inputs():
    """``Predictor.predict`` goes through the same limits; checking never edits the caller's arrays."""
    many = np.zeros((MAX_POINTS_PER_FRAME + 1, 2))
    with pytest.raises(PromptError, match=f"at most {MAX_POINTS_PER_FRAME} points"):
        Predictor._check_prompts(many, None, None, (20, 30))
    with pytest.raises(PromptError, match=r"point 1 \(inf, 2\) has non-finite"):
        Predictor._check_prompts(np.array([[np.inf, 2.0]]), None, None, (20, 30))
    with pytest.raises(PromptError, match="non-finite"):
        Predictor._check_prompts(None, None, np.array([0, 0, np.inf, 5.0]), (20, 30))
    points, labels, box = np.array([[3.0, 4.0], [5.0, 6.0]]), np.array([1, 0]), np.array([1.0, 2.0, 9.0, 9.0])
    copies = points.copy(), labels.copy(), box.copy()
    Predictor._check_prompts(points, labels, box, (20, 30))
    pixel_prompts((20, 30), points, labels, box)
    for array, copy in zip((points, labels, box), copies):
        np.testing.assert_array_equal(array, copy)
    clipped = pixel_prompts((20, 30), box=box + [-5, 0, 50, 0])
    np.testing.assert_array_equal(box, copies[2])
    np.testing.assert_allclose(clipped.box, [0, 2, 30, 9])


# ---- markups: geometry that hangs or is absurd ------------------------------------------------------
@pytest.mark.timeout(20)
def test_roi_of_size_1e300_is_refused_quickly(tmp_path):
    path = write_json(tmp_path / "roi.mrk.json", roi_markup(size=[1e300, 1e300, 1e300]))
    with pytest.raises(PromptError, match=r"roi.mrk.json: ROI 'R' size .* exceeds"):
        read_markups(path)


@pytest.mark.timeout(20)
def test_huge_roi_only_visits_the_volumes_slices(tmp_path):
    """A legal but huge ROI over a fine grid spans 1e8 slices: only the volume's 10 are visited."""
    stack = frames_along(Volume(np.zeros((6, 8, 10), np.uint8), spacing=(1e-3,) * 3), "sagittal")
    path = write_json(tmp_path / "roi.mrk.json", roi_markup(center=[0.0, 0.0, 0.0], size=[1e5, 1e5, 1e5]))
    start = time.perf_counter()
    prompts = prompts_from_markups(stack, read_markups(path))
    assert time.perf_counter() - start < 3
    assert sorted(prompts) == list(range(10))
    np.testing.assert_allclose(prompts[4].box, [0, 0, 8, 6])


@pytest.mark.timeout(20)
def test_cli_segment_volume_with_a_1e300_roi_fails_fast(tmp_path, capsys):
    roi = write_json(tmp_path / "roi.mrk.json", roi_markup(size=[1e300, 1e300, 1e300]))
    out = tmp_path / "seg.seg.nrrd"
    code, err = run_cli(
        capsys, "segment-volume", tiny_volume(tmp_path), "--roi", roi, *model_args(tmp_path), "--out", out
    )
    assert code == 1 and "ultrasam segment-volume: error:" in err and "roi.mrk.json" in err and "exceeds" in err
    assert not out.exists()


def test_skewed_roi_orientation_is_refused(tmp_path):
    skewed = [1, 0.3, 0, 0, 1, 0, 0, 0, 1]  # x and y axes 73 degrees apart
    path = write_json(tmp_path / "roi.mrk.json", roi_markup(orientation=skewed))
    with pytest.raises(PromptError, match=r"roi.mrk.json: ROI 'R' orientation is not orthonormal"):
        read_markups(path)
    stretched = [2, 0, 0, 0, 1, 0, 0, 0, 1]
    with pytest.raises(PromptError, match="not orthonormal"):
        read_markups(write_json(tmp_path / "roi2.mrk.json", roi_markup(orientation=stretched)))
    c, s = np.cos(0.3), np.sin(0.3)
    rotated = [c, -s, 0, s, c, 0, 0, 0, 1]
    assert len(read_markups(write_json(tmp_path / "ok.mrk.json", roi_markup(orientation=rotated))).rois) == 1


@pytest.mark.parametrize("field", ["center", "size"])
def test_absurd_roi_values_are_refused(tmp_path, field):
    path = write_json(tmp_path / "roi.mrk.json", roi_markup(**{field: [1.0, 2e6, 1.0]}))
    with pytest.raises(PromptError, match=rf"ROI 'R' {field} .* exceeds"):
        read_markups(path)


# ---- markups: too many control points ---------------------------------------------------------------
@pytest.mark.timeout(20)
def test_hundred_thousand_control_points_are_refused_quickly(tmp_path):
    points = [{"position": [1.0, 2.0, 3.0]}] * 100_000
    path = write_json(tmp_path / "many.mrk.json", point_list(points))
    start = time.perf_counter()
    with pytest.raises(
        PromptError, match=rf"many.mrk.json: point list 'F' has 100000 control points; at most {MAX_CONTROL_POINTS}"
    ):
        read_markups(path)
    assert time.perf_counter() - start < 3


@pytest.mark.timeout(20)
def test_many_points_on_one_slice_fail_fast_without_a_quadratic_merge():
    stack = frames_along(Volume(np.zeros((4, 8, 10), np.uint8)), "axial")
    point = np.array([2.0, 3.0, 1.0])
    markups = Markups(tuple(MarkupPoint(point, f"F-{n}", number=n) for n in range(1, 100_001)))
    start = time.perf_counter()
    with pytest.raises(
        PromptError, match=f"100000 points on axial slice 1: at most {MAX_POINTS_PER_FRAME} points per frame"
    ):
        prompts_from_markups(stack, markups)
    assert time.perf_counter() - start < 3


def test_points_spread_over_slices_are_grouped_in_order():
    stack = frames_along(Volume(np.zeros((4, 8, 10), np.uint8)), "axial")
    positions = [(n % 10, n % 8, n % 4) for n in range(4000)]
    markups = Markups(tuple(MarkupPoint(np.array(p, float), f"F-{n}", number=n + 1) for n, p in enumerate(positions)))
    prompts = prompts_from_markups(stack, markups)
    assert sorted(prompts) == [0, 1, 2, 3]
    assert all(len(p.points) == 1000 for p in prompts.values())
    np.testing.assert_allclose(prompts[1].points[:2], [[1, 1], [5, 5]])
    assert prompts[1].names[0].startswith("point 2 ('F-1'")


def test_merged_files_are_capped_too(tmp_path):
    points = [{"position": [1.0, 2.0, 3.0]}] * 6000
    paths = [write_json(tmp_path / f"p{n}.mrk.json", point_list(points)) for n in range(2)]
    with pytest.raises(PromptError, match=f"12000 control points in all; at most {MAX_CONTROL_POINTS}"):
        read_prompt_files(paths)
    assert MAX_CONTROL_POINTS == 10_000


# ---- markups: wrong JSON types ----------------------------------------------------------------------
BAD_DOCUMENTS = {
    "controlPoints-string": (point_list("abc"), "'controlPoints'"),
    "controlPoints-dict": (point_list({"position": [1, 2, 3]}), "'controlPoints'"),
    "controlPoints-numbers": (point_list([1, 2, 3]), "'controlPoints'"),
    "controlPoint-list": (point_list([[1, 2, 3]]), "'controlPoints'"),
    "units-dict": (point_list([{"position": [1, 2, 3]}], coordinateUnits={"mm": 1}), "coordinateUnits"),
    "units-nested": (point_list([{"position": [1, 2, 3]}], coordinateUnits=[["mm"]]), "coordinateUnits"),
    "units-number": (point_list([{"position": [1, 2, 3]}], coordinateUnits=5), "coordinateUnits"),
    "system-list": (point_list([{"position": [1, 2, 3]}], coordinateSystem=["LPS"]), "coordinateSystem"),
    "position-string": (point_list([{"position": "1,2,3"}]), "position"),
    "position-short": (point_list([{"position": [1, 2]}]), "position"),
    "position-strings": (point_list([{"position": ["1", "2", "3"]}]), "position"),
    "position-null": (point_list([{"position": [1, None, 3]}]), "position"),
    "position-nested": (point_list([{"position": [[1, 2, 3]]}]), "position"),
    "position-bool": (point_list([{"position": [True, 2, 3]}]), "position"),
    "position-dict": (point_list([{"position": {"x": 1}}]), "position"),
    "position-inf": (point_list([{"position": [1e400, 2, 3]}]), "position"),
    "position-bigint": (point_list([{"position": [10**400, 2, 3]}]), "position"),
    "label-dict": (point_list([{"position": [1, 2, 3], "label": {"a": 1}}]), "label"),
    "name-list": ({"markups": [{"type": "Fiducial", "name": [[1]], "controlPoints": []}]}, "name"),
    "type-list": ({"markups": [{"type": ["ROI"], "controlPoints": []}]}, "type"),
    "roi-center": (roi_markup(center="middle"), "center"),
    "roi-orientation": (roi_markup(orientation=[1, 0, 0]), "orientation"),
    "roi-controlPoints": ({"markups": [{"type": "ROI", "name": "R", "controlPoints": 7}]}, "'controlPoints'"),
    "markups-string": ({"markups": "F"}, "'markups'"),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
def test_wrong_json_types_name_the_file_and_the_field(tmp_path, case):
    document, field = BAD_DOCUMENTS[case]
    path = write_json(tmp_path / f"{case}.mrk.json", document)
    with pytest.raises(PromptError) as info:
        read_markups(path)
    message = str(info.value)
    assert str(path) in message and field in message, message
    assert len(message) < 400, message


@pytest.mark.parametrize("where", ["document", "position"])
def test_deeply_nested_json_is_a_clear_error(tmp_path, where):
    deep = "[" * 100_000 + "]" * 100_000
    text = (
        deep
        if where == "document"
        else '{"markups": [{"type": "Fiducial", "controlPoints": [{"position": %s}]}]}' % deep
    )
    path = tmp_path / "deep.mrk.json"
    path.write_text(text)
    with pytest.raises(PromptError, match=r"deep.mrk.json is not a valid markups JSON file: nested too deeply"):
        read_markups(path)


def test_oversized_markups_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.mrk.json"
    with open(path, "wb") as handle:
        handle.truncate(MAX_MARKUPS_FILE_BYTES + 1)  # sparse: no disk used, nothing worth reading
    with pytest.raises(PromptError, match=rf"big.mrk.json is {MAX_MARKUPS_FILE_BYTES + 1:,} bytes; the limit is"):
        read_markups(path)


def test_cli_segment_volume_bad_markups_types_exit_1_and_write_nothing(tmp_path, capsys):
    markups = write_json(tmp_path / "bad.mrk.json", point_list("abc"))
    out = tmp_path / "seg.seg.nrrd"
    code, err = run_cli(
        capsys, "segment-volume", tiny_volume(tmp_path), "--markups", markups, *model_args(tmp_path), "--out", out
    )
    assert code == 1
    assert "ultrasam segment-volume: error:" in err and "bad.mrk.json" in err and "'controlPoints'" in err
    assert "Traceback" not in err
    assert not out.exists()
