"""Output files, checked by reading them back with independent readers.

``.seg.nrrd`` goes through the real Slicer segmentation storage node (slicer-core); labelmaps
through SimpleITK and Slicer's volume reader; COCO RLE through pycocotools; PNGs through Pillow.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from ultrasam.atomic import atomic_write
from ultrasam.errors import ImageError, OutputExistsError
from ultrasam.frames import frames_along
from ultrasam.outputs import (
    Segment,
    check_writable,
    montage_image,
    montage_indices,
    write_coco_rle,
    write_frame_masks,
    write_image_png,
    write_labelmap,
    write_mask_png,
    write_montage_png,
    write_overlay_png,
    write_seg_nrrd,
)
from ultrasam.prompts import FramePrompts
from ultrasam.volume import Volume

slicer = pytest.importorskip("slicer")
import mrml_helpers as mh  # noqa: E402


@pytest.fixture()
def app():
    return mh.create_headless_slicer()


@pytest.fixture()
def volume() -> Volume:
    """Oblique (rotated about z and tilted), anisotropic, non-zero origin."""
    a, b = np.radians(20), np.radians(10)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rng = np.random.default_rng(3)
    return Volume(
        rng.integers(0, 255, (6, 9, 11)).astype(np.uint8),
        spacing=(0.4, 0.6, 2.5),
        origin=(-12.5, 30.0, 4.0),
        direction=rz @ rx,
    )


def _masks(volume: Volume):
    grid = volume.array.shape
    lesion = np.zeros(grid, bool)
    lesion[1:4, 2:6, 3:8] = True
    cyst = np.zeros(grid, bool)
    cyst[4:6, 0:3, 0:2] = True
    overlapping = np.zeros(grid, bool)
    overlapping[2:5, 4:8, 6:10] = True  # overlaps the lesion
    return lesion, cyst, overlapping


def _full_grid(volume: Volume, array: np.ndarray, ijk_to_ras: np.ndarray) -> np.ndarray:
    """Place a Slicer layer array (possibly cropped) into the volume's full ``[k, j, i]`` grid."""
    start = np.linalg.inv(volume.ijk_to_ras()) @ ijk_to_ras[:, 3]
    offset = np.round(start[:3]).astype(int)
    np.testing.assert_allclose(start[:3], offset, atol=1e-6)
    out = np.zeros(volume.array.shape, array.dtype)
    i0, j0, k0 = offset
    out[k0 : k0 + array.shape[0], j0 : j0 + array.shape[1], i0 : i0 + array.shape[2]] = array
    return out


@pytest.mark.parametrize("with_overlap", [False, True], ids=["one-layer", "two-layers"])
def test_seg_nrrd_read_back_by_slicer(app, tmp_path, volume, with_overlap):
    lesion, cyst, overlapping = _masks(volume)
    segments = [Segment("lesion", lesion, (1.0, 0.0, 0.0)), Segment("cyst", cyst, (0.0, 0.5, 1.0))]
    if with_overlap:
        segments.append(Segment("overlap region", overlapping, (0.2, 0.9, 0.2)))
    path = write_seg_nrrd(tmp_path / "out.seg.nrrd", volume, segments)

    node = mh.read_segmentation(app, path)
    segmentation = node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]
    assert ids == ["lesion", "cyst"] + (["overlap_region"] if with_overlap else [])
    for segment_id, segment in zip(ids, segments):
        slicer_segment = segmentation.GetSegment(segment_id)
        assert slicer_segment.GetName() == segment.name
        np.testing.assert_allclose(slicer_segment.GetColor(), segment.color, atol=1e-6)
        array, ijk_to_ras, label = mh.segment_labelmap(node, segment_id)
        # geometry: Slicer's image-to-RAS equals the volume's IJK→RAS (up to the crop offset)
        np.testing.assert_allclose(ijk_to_ras[:3, :3], volume.ijk_to_ras()[:3, :3], atol=1e-9)
        np.testing.assert_array_equal(_full_grid(volume, array, ijk_to_ras) == label, segment.mask)
    # the reference geometry Slicer keeps for the segmentation is the volume's
    reference = segmentation.GetConversionParameter("Reference image geometry")
    numbers = [float(v) for v in reference.strip(";").split(";")]
    np.testing.assert_allclose(np.array(numbers[:16]).reshape(4, 4), volume.ijk_to_ras(), atol=1e-9)
    assert numbers[16:] == [0, 10, 0, 8, 0, 5]


def test_seg_nrrd_geometry_matches_slicer_volume_node(app, tmp_path, volume):
    volume_path = tmp_path / "volume.nrrd"
    sitk.WriteImage(volume.to_sitk(), str(volume_path))
    volume_node = mh.load_volume_node(app, volume_path)
    lesion, _, _ = _masks(volume)
    full = np.ones(volume.array.shape, bool)  # a full segment: no cropping anywhere
    path = write_seg_nrrd(tmp_path / "full.seg.nrrd", volume, {"all": full, "lesion": lesion})
    node = mh.read_segmentation(app, path)
    array, ijk_to_ras, label = mh.segment_labelmap(node, "all")
    np.testing.assert_allclose(ijk_to_ras, mh.ijk_to_ras_matrix(volume_node), atol=1e-9)
    assert array.shape == volume.array.shape and (array == label).all()


def test_seg_nrrd_refuses_bad_input(tmp_path, volume):
    with pytest.raises(ImageError, match="shape"):
        write_seg_nrrd(tmp_path / "x.seg.nrrd", volume, {"bad": np.zeros((2, 2, 2), bool)})
    with pytest.raises(ImageError, match="no segments"):
        write_seg_nrrd(tmp_path / "x.seg.nrrd", volume, [])
    assert not list(tmp_path.iterdir())


def test_no_overwrite_keeps_the_existing_file(tmp_path, volume):
    lesion, cyst, _ = _masks(volume)
    path = write_seg_nrrd(tmp_path / "a.seg.nrrd", volume, {"lesion": lesion})
    before = path.read_bytes()
    writers = [
        lambda: write_seg_nrrd(path, volume, {"cyst": cyst}),
        lambda: write_labelmap(path, volume, cyst),
        lambda: write_mask_png(path, cyst[0]),
        lambda: write_coco_rle(path, [cyst[0]]),
        lambda: write_overlay_png(path, volume.array[0], cyst[0]),
    ]
    for write in writers:
        with pytest.raises(OutputExistsError, match="overwrite"):
            write()
        assert path.read_bytes() == before
    write_seg_nrrd(path, volume, {"cyst": cyst}, overwrite=True)
    assert path.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.seg.nrrd"]


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "result.nii.gz"
    target.write_bytes(b"previous")

    def half_then_fail(temporary):
        temporary.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half_then_fail, overwrite=True)
    assert target.read_bytes() == b"previous"
    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "new.png", half_then_fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.nii.gz"]
    # the temporary file ends with the real name, so extension-driven writers pick the format
    seen = []
    atomic_write(tmp_path / "deep" / "x.seg.nrrd", lambda t: (seen.append(t.name), t.write_bytes(b"1")))
    assert seen[0].endswith("x.seg.nrrd") and seen[0].startswith(".tmp-")


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_labelmap_round_trip(app, tmp_path, volume, suffix):
    lesion, cyst, _ = _masks(volume)
    labels = lesion.astype(np.uint8) + 2 * cyst.astype(np.uint8)
    path = write_labelmap(tmp_path / f"labels{suffix}", volume, labels)
    image = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), labels)
    np.testing.assert_allclose(image.GetSpacing(), volume.spacing, atol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), volume.origin, atol=1e-5)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), volume.direction, atol=1e-6)
    if suffix == ".nrrd":
        node = mh.load_volume_node(app, path, labelmap=True)
        np.testing.assert_allclose(mh.ijk_to_ras_matrix(node), volume.ijk_to_ras(), atol=1e-9)
        np.testing.assert_array_equal(mh.volume_node_array(node), labels)
    with pytest.raises(ImageError, match="integers"):
        write_labelmap(tmp_path / "float.nrrd", volume, labels.astype(float))


def test_mask_png_is_0_255(tmp_path):
    mask = np.zeros((7, 9), bool)
    mask[2:5, 3:8] = True
    path = write_mask_png(tmp_path / "mask.png", mask)
    with Image.open(path) as image:
        assert image.mode == "L"
        pixels = np.array(image)
    np.testing.assert_array_equal(pixels, mask.astype(np.uint8) * 255)
    with pytest.raises(ImageError, match="2D"):
        write_mask_png(tmp_path / "m3.png", np.zeros((2, 3, 4)))


def test_coco_rle_decodes_to_the_masks(tmp_path):
    from pycocotools import mask as mask_utils

    first = np.zeros((20, 30), bool)
    first[3:8, 10:25] = True  # rows 3..7, cols 10..24: COCO bbox [10, 3, 15, 5]
    second = np.zeros((20, 30), bool)
    path = write_coco_rle(
        tmp_path / "coco.json", [first, second, None], scores=[0.9, 0.1, 0.0], file_names=["a.png", "b.png", "c.png"]
    )
    document = json.loads(path.read_text())
    assert [image["file_name"] for image in document["images"]] == ["a.png", "b.png"]
    assert len(document["annotations"]) == 1  # the empty mask has an image but no annotation
    annotation = document["annotations"][0]
    assert annotation["bbox"] == [10.0, 3.0, 15.0, 5.0] and annotation["area"] == 75 and annotation["score"] == 0.9
    decoded = mask_utils.decode(
        {"size": annotation["segmentation"]["size"], "counts": annotation["segmentation"]["counts"].encode()}
    )
    np.testing.assert_array_equal(decoded.astype(bool), first)
    assert document["categories"] == [{"id": 1, "name": "object", "supercategory": "none"}]


def test_overlay_draws_mask_and_prompts(tmp_path):
    image = np.full((60, 80), 100, np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[10:30, 20:50] = True
    prompts = FramePrompts(0, [[35.0, 20.0], [70.0, 50.0]], [1, 0], [20, 10, 50, 30])
    path = write_overlay_png(tmp_path / "qc.png", image, mask, prompts)
    with Image.open(path) as picture:
        rgb = np.array(picture)
    assert rgb.shape == (60, 80, 3)
    np.testing.assert_array_equal(rgb[20, 35], [64, 255, 64])  # positive point: green
    np.testing.assert_array_equal(rgb[50, 70], [255, 48, 48])  # negative point: red
    # the box is drawn just outside its pixels (rows 10..29, cols 20..49), the mask outline on them
    for row, col in ((9, 28), (30, 28), (15, 19), (15, 50)):
        np.testing.assert_array_equal(rgb[row, col], [255, 220, 0])
    np.testing.assert_array_equal(rgb[10, 28], [255, 64, 64])
    inside = rgb[15, 25].astype(int)
    assert inside[0] > 100 and inside[1] < 100  # tinted red
    np.testing.assert_array_equal(rgb[5, 5], [100, 100, 100])  # untouched background


def test_montage_shows_prompted_and_propagated_frames(tmp_path, volume):
    stack = frames_along(volume, "sagittal")
    masks = {n: np.ones(stack.frame_shape, bool) for n in range(2, 9)}
    prompts = {5: FramePrompts(5, [[4.0, 3.0]], [1])}
    grid = montage_image(stack, masks, prompts, max_tiles=4)
    assert grid.shape == (2 * 270, 2 * 256, 3)
    path = write_montage_png(tmp_path / "montage.png", stack, masks, prompts, max_tiles=4)
    assert path.stat().st_size > 0


def test_frame_masks_go_back_to_the_volume_grid(app, tmp_path, volume):
    stack = frames_along(volume, "sagittal")  # frame n = constant i; rows k, columns j
    mask = np.zeros(stack.frame_shape, bool)
    mask[1:4, 2:5] = True
    path = write_frame_masks(tmp_path / "sweep.seg.nrrd", stack, {3: mask, 4: mask}, name="nodule")
    node = mh.read_segmentation(app, path)
    array, ijk_to_ras, label = mh.segment_labelmap(node, "nodule")
    expected = np.zeros(volume.array.shape, bool)
    expected[1:4, 2:5, 3:5] = True  # [k, j, i]
    np.testing.assert_array_equal(_full_grid(volume, array, ijk_to_ras) == label, expected)
    labelmap = write_frame_masks(tmp_path / "sweep.nii.gz", stack, {3: mask, 4: mask})
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(labelmap))), expected.astype(np.uint8))
    with pytest.raises(ImageError, match="cannot write a mask volume"):
        write_frame_masks(tmp_path / "sweep.png", stack, {3: mask})


def test_check_writable_fails_before_any_work(tmp_path):
    existing = tmp_path / "exists.png"
    existing.write_bytes(b"x")
    check_writable([None, tmp_path / "new.png"])
    with pytest.raises(OutputExistsError, match="exists.png"):
        check_writable([tmp_path / "new.png", existing])
    check_writable([existing], overwrite=True)


def test_image_png_keeps_8_and_16_bit_and_windows_the_rest(tmp_path):
    deep = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    with Image.open(write_image_png(tmp_path / "deep.png", deep)) as image:
        np.testing.assert_array_equal(np.array(image), deep)
    floats = np.linspace(-1.0, 1.0, 12).reshape(3, 4)
    with Image.open(write_image_png(tmp_path / "float.png", floats)) as image:
        pixels = np.array(image)
    assert pixels.shape == (3, 4, 3) and pixels[0, 0, 0] == 0 and pixels[-1, -1, 0] == 255


def test_coco_names_follow_the_image(tmp_path):
    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:4] = True
    single = json.loads(write_coco_rle(tmp_path / "one.json", {0: mask}, image_name="scan.png").read_text())
    assert [image["file_name"] for image in single["images"]] == ["scan.png"]
    many = json.loads(write_coco_rle(tmp_path / "many.json", {2: mask, 7: mask}, image_name="cine.nii.gz").read_text())
    assert [(image["id"], image["file_name"]) for image in many["images"]] == [
        (3, "cine__00002.png"),
        (8, "cine__00007.png"),
    ]


def test_montage_lists_prompted_frames_first(volume):
    stack = frames_along(volume, "axial")
    masks = {n: np.ones(stack.frame_shape, bool) for n in range(len(stack))}
    assert montage_indices(len(stack), masks, [4], max_tiles=1) == [4]
    assert montage_indices(len(stack), masks, [4], max_tiles=3) == [0, 4, 5]  # then spread over the rest
    assert montage_indices(len(stack), {}, [], max_tiles=3) == [3]  # nothing at all: the middle frame
    grid = montage_image(stack, masks, prompted=[4], max_tiles=1)
    assert grid.shape == (270, 256, 3)
