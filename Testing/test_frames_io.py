"""Reading frames: real ultrasound files, every raster flavour, DICOM cines, and broken volumes.

Pixels are compared with Pillow's or SimpleITK's independent reading of the same file, and
geometry with Slicer's own volume reader where Slicer could open the file too.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from ultrasam.errors import ImageError
from ultrasam.readers import load_frames
from ultrasam.readers import load_stack, sniff_format
from ultrasam.volume import Volume, load_volume


# ---- real ultrasound -----------------------------------------------------------------------------
def test_real_busi_hc18_mmotu_frames(data_dir):
    files = [
        data_dir / "busi" / "Dataset_BUSI_with_GT" / "benign" / "benign (1).png",
        data_dir / "hc18" / "training_set" / "000_HC.png",
        sorted((data_dir / "mmotu_sample" / "sample_images").glob("*.png"))[0],
    ]
    for path in files:
        frames = load_frames(path)
        assert len(frames) == 1
        frame = frames[0]
        with Image.open(path) as image:
            expected = np.array(image)
        np.testing.assert_array_equal(frame.image, expected)
        assert frame.axis == "axial" and frame.index == 0
        height, width = expected.shape[:2]
        assert frame.shape == (height, width)
        # a 2D image's pixel (x, y) is voxel (x, y, 0)
        np.testing.assert_allclose(frame.pixel_to_ijk([[width - 1, height - 1]]), [[width - 1, height - 1, 0]])


def test_real_png_geometry_is_itks(data_dir):
    """Slicer reads PNGs through ITK; slicer-core ships no PNG reader, so ITK itself is the oracle."""
    path = data_dir / "hc18" / "training_set" / "000_HC.png"
    frame = load_frames(path)[0]
    image = sitk.ReadImage(str(path))
    for x, y in ((0, 0), (799, 0), (123, 456)):
        expected = image.TransformIndexToPhysicalPoint((x, y))
        np.testing.assert_allclose(frame.pixel_to_physical([[x, y]])[0, :2], expected, atol=1e-9)
    np.testing.assert_array_equal(frame.image, sitk.GetArrayFromImage(image))


# ---- raster flavours made here -------------------------------------------------------------------
@pytest.fixture()
def gray() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (21, 34), dtype=np.uint8)


def test_16_bit_png_keeps_values(tmp_path):
    values = np.random.default_rng(1).integers(0, 65536, (13, 17), dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    frame = load_frames(path)[0]
    assert frame.image.dtype == np.uint16
    np.testing.assert_array_equal(frame.image, values)


def test_rgba_and_gray_alpha_png(tmp_path, gray):
    rgba = np.stack([gray, 255 - gray, gray // 2, np.full_like(gray, 200)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_frames(tmp_path / "rgba.png")[0].image, rgba)
    Image.fromarray(np.stack([gray, 255 - gray], -1), "LA").save(tmp_path / "la.png")  # ITK cannot read this
    frame = load_frames(tmp_path / "la.png")[0]
    np.testing.assert_array_equal(frame.image[..., 0], gray)
    np.testing.assert_array_equal(frame.image[..., 3], 255 - gray)


def test_palette_png_becomes_rgb(tmp_path, gray):
    palette_image = Image.fromarray(gray).convert("P", palette=Image.Palette.ADAPTIVE, colors=12)
    palette_image.save(tmp_path / "palette.png")
    expected = np.array(palette_image.convert("RGB"))
    image = load_frames(tmp_path / "palette.png")[0].image
    assert image.shape == (*gray.shape, 3)
    np.testing.assert_array_equal(image, expected)


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ".tif", ".gif"])
def test_other_raster_formats(tmp_path, gray, suffix):
    path = tmp_path / f"image{suffix}"
    Image.fromarray(gray).save(path)
    image = load_frames(path)[0].image
    with Image.open(path) as reference:
        expected = np.array(reference.convert("L"))
    gray_view = image if image.ndim == 2 else image[..., 0]  # 8-bit BMP/GIF are palette files: RGB
    if suffix == ".jpg":
        assert np.abs(gray_view.astype(int) - expected).max() <= 2  # decoder rounding differs
    else:
        np.testing.assert_array_equal(gray_view, expected)


def test_2d_spacing_comes_from_the_file_as_itk_reads_it(tmp_path, gray):
    image = sitk.GetImageFromArray(gray)
    image.SetSpacing((0.1, 0.2))
    sitk.WriteImage(image, str(tmp_path / "aniso.mha"))
    frame = load_frames(tmp_path / "aniso.mha")[0]
    np.testing.assert_allclose(frame.pixel_spacing, (0.1, 0.2))
    assert frame.square().shape == (42, 34)
    # ITK (hence Slicer) ignores a PNG's pHYs resolution: unit spacing, as Slicer would show it
    Image.fromarray(gray).save(tmp_path / "dpi.png", dpi=(254, 127))
    assert load_frames(tmp_path / "dpi.png")[0].pixel_spacing == (1.0, 1.0)


def test_content_sniffing_ignores_a_wrong_extension(tmp_path, gray):
    path = tmp_path / "really_a_png.dat"
    Image.fromarray(gray).save(path, format="PNG")
    assert sniff_format(path) == "png"
    np.testing.assert_array_equal(load_frames(path)[0].image, gray)


# ---- DICOM cines -----------------------------------------------------------------------------------
def test_multiframe_dicom_cine(tmp_path):
    cine = np.random.default_rng(2).integers(0, 256, (5, 24, 32), dtype=np.uint8)
    image = sitk.GetImageFromArray(cine)
    image.SetSpacing((0.2, 0.3, 1.0))
    path = tmp_path / "cine.dcm"
    sitk.WriteImage(image, str(path))
    assert sniff_format(path) == "dicom"
    frames = load_frames(path)
    assert len(frames) == 5
    for n, frame in enumerate(frames):
        np.testing.assert_array_equal(frame.image, cine[n])
        np.testing.assert_allclose(frame.pixel_spacing, (0.2, 0.3))


def test_rgb_ultrasound_dicom_cine_and_single_frame(tmp_path):
    rgb = np.random.default_rng(4).integers(0, 256, (3, 16, 20, 3), dtype=np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "rgb.dcm"))
    frames = load_frames(tmp_path / "rgb.dcm")
    assert len(frames) == 3 and frames[1].image.shape == (16, 20, 3)
    np.testing.assert_array_equal(frames[2].image, rgb[2])
    sitk.WriteImage(sitk.GetImageFromArray(rgb[0], isVector=True), str(tmp_path / "one.dcm"))
    single = load_frames(tmp_path / "one.dcm")
    assert len(single) == 1
    np.testing.assert_array_equal(single[0].image, rgb[0])


# ---- volumes ---------------------------------------------------------------------------------------
def test_volume_file_sliced_sagittally(tmp_path):
    k, j, i = np.meshgrid(np.arange(4), np.arange(5), np.arange(6), indexing="ij")
    array = (100 * i + 10 * j + k).astype(np.int16)
    path = tmp_path / "vol.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    frames = load_frames(path, axis="sagittal")
    assert len(frames) == 6
    np.testing.assert_array_equal(frames[2].image, array[:, :, 2])
    stack = load_stack(path, axis="coronal")
    assert len(stack) == 5 and stack.frame_shape == (4, 6)


def test_nan_volume_is_refused_with_a_count(tmp_path):
    array = np.ones((3, 4, 5), np.float32)
    array[1, 2, 3] = np.nan
    array[0, 0, 0] = np.nan
    array[2, 3, 4] = np.nan
    path = tmp_path / "nan.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    with pytest.raises(ImageError, match="NaN in 3 voxels"):
        load_volume(path)
    with pytest.raises(ImageError, match="NaN in 3 voxels"):
        load_frames(path)


def test_4d_and_many_component_volumes_are_refused(tmp_path):
    four_d = sitk.JoinSeries([sitk.GetImageFromArray(np.zeros((3, 4, 5), np.uint8))] * 2)
    sitk.WriteImage(four_d, str(tmp_path / "four.nii.gz"))
    with pytest.raises(ImageError, match="4D image"):
        load_volume(tmp_path / "four.nii.gz")
    many = sitk.GetImageFromArray(np.zeros((3, 4, 5, 6), np.uint8), isVector=True)
    sitk.WriteImage(many, str(tmp_path / "vector.nrrd"))
    with pytest.raises(ImageError, match="6 components"):
        load_volume(tmp_path / "vector.nrrd")
    one_time_point = sitk.JoinSeries([sitk.GetImageFromArray(np.ones((3, 4, 5), np.uint8))])
    sitk.WriteImage(one_time_point, str(tmp_path / "t1.nii.gz"))
    assert load_volume(tmp_path / "t1.nii.gz").array.shape == (3, 4, 5)


def test_unreadable_and_missing_files(tmp_path, gray):
    (tmp_path / "empty.nrrd").write_bytes(b"")
    with pytest.raises(ImageError, match="cannot read image"):
        load_frames(tmp_path / "empty.nrrd")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(ImageError, match="cannot read image"):
        load_frames(tmp_path / "junk.png")
    with pytest.raises(ImageError, match="not found"):
        load_frames(tmp_path / "absent.png")
    Image.fromarray(gray).save(tmp_path / "flat.png")
    with pytest.raises(ImageError, match="only axial frames"):
        load_frames(tmp_path / "flat.png", axis="sagittal")
    with pytest.raises(ImageError, match="empty"):
        Volume(np.zeros((1, 0, 4)))
