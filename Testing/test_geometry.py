"""Geometry: volume ↔ frame ↔ physical mappings, the sagittal convention, square resampling, prompts.

Expected values come from independent sources: SimpleITK's own index→point transform, the
US-43d slicing formula ``array.transpose(2, 0, 1)``, volumes whose voxels encode their own
index, and hand-derived box extents.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st

from ultrasam.errors import ImageError, PromptError
from ultrasam.frames import AXES, FrameStack, frames_along
from ultrasam.markups import MarkupPoint, MarkupRoi, Markups
from ultrasam.prompts import FramePrompts, check_on_frame, pixel_prompts, prompts_from_markups, roi_to_boxes
from ultrasam.volume import Volume

FAST = settings(max_examples=60, deadline=None)


def index_coded_volume(nk: int = 3, nj: int = 4, ni: int = 5, **geometry) -> Volume:
    """Voxel value = 100 i + 10 j + k, so every pixel says which voxel it came from."""
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    return Volume((100 * i + 10 * j + k).astype(np.int32), **geometry)


def random_rotation(draw) -> np.ndarray:
    """An orthonormal matrix, proper or improper (flips included), from a hypothesis draw."""
    values = draw(st.lists(st.floats(-1, 1, allow_nan=False), min_size=9, max_size=9))
    matrix = np.array(values).reshape(3, 3) + np.eye(3) * 1e-3
    q, r = np.linalg.qr(matrix)
    q = q * np.sign(np.where(np.diag(r) == 0, 1, np.diag(r)))
    flips = np.array(draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=3, max_size=3)))
    return q * flips[None, :]


@st.composite
def volumes(draw) -> Volume:
    nk, nj, ni = (draw(st.integers(1, 7)) for _ in range(3))
    spacing = draw(st.lists(st.floats(0.05, 5.0), min_size=3, max_size=3))
    origin = draw(st.lists(st.floats(-200, 200), min_size=3, max_size=3))
    return Volume(np.zeros((nk, nj, ni), np.uint8), spacing=spacing, origin=origin, direction=random_rotation(draw))


# ---- volume geometry ----------------------------------------------------------------------------
@FAST
@given(volume=volumes(), fractions=st.lists(st.floats(0, 1), min_size=3, max_size=3))
def test_index_to_physical_matches_simpleitk(volume: Volume, fractions):
    ijk = np.array(fractions) * (np.array(volume.shape_ijk) - 1)
    image = volume.to_sitk()
    expected_lps = np.array(image.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in ijk)))
    np.testing.assert_allclose(volume.index_to_physical(ijk, "lps"), expected_lps, atol=1e-9)
    np.testing.assert_allclose(volume.index_to_physical(ijk, "ras"), expected_lps * [-1, -1, 1], atol=1e-9)
    np.testing.assert_allclose(volume.physical_to_index(expected_lps, "lps"), ijk, atol=1e-7)


def test_sitk_round_trip_keeps_geometry_and_2d_becomes_one_slice():
    image = sitk.GetImageFromArray(np.arange(12, dtype=np.uint8).reshape(3, 4))
    image.SetSpacing((0.3, 0.7))
    image.SetOrigin((5.0, -2.0))
    image.SetDirection((0.0, 1.0, 1.0, 0.0))
    volume = Volume.from_sitk(image)
    assert volume.array.shape == (1, 3, 4) and volume.is_single_slice
    np.testing.assert_allclose(volume.spacing, [0.3, 0.7, 1.0])
    np.testing.assert_allclose(volume.direction, [[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    point = image.TransformContinuousIndexToPhysicalPoint((2.0, 1.0))
    np.testing.assert_allclose(volume.index_to_physical([2, 1, 0])[:2], point)


def test_volume_rejects_bad_arrays():
    with pytest.raises(ImageError, match="empty"):
        Volume(np.zeros((0, 3, 3)))
    with pytest.raises(ImageError, match="5 components"):
        Volume(np.zeros((2, 3, 3, 5)))
    with pytest.raises(ImageError, match="spacing"):
        Volume(np.zeros((2, 3, 3)), spacing=(1, 0, 1))


# ---- the slicing convention ---------------------------------------------------------------------
def test_sagittal_is_constant_first_index_as_us43d():
    volume = index_coded_volume()
    stack = frames_along(volume, "sagittal")
    us43d = np.transpose(volume.array, (2, 0, 1))  # the original extract_slices(view='sagittal')
    assert len(stack) == 5 and stack.frame_shape == (3, 4)
    for n, frame in enumerate(stack):
        np.testing.assert_array_equal(frame.image, us43d[n])
        rows, cols = np.indices(frame.shape)
        # rows are k (z), columns are j (y), the frame is i = n
        np.testing.assert_array_equal(frame.image, 100 * n + 10 * cols + rows)


def test_axial_and_coronal_conventions():
    volume = index_coded_volume()
    axial, coronal = frames_along(volume, "axial"), frames_along(volume, "coronal")
    assert (len(axial), axial.frame_shape, len(coronal), coronal.frame_shape) == (3, (4, 5), 4, (3, 5))
    rows, cols = np.indices((4, 5))
    np.testing.assert_array_equal(axial[2].image, 100 * cols + 10 * rows + 2)
    rows, cols = np.indices((3, 5))
    np.testing.assert_array_equal(coronal[1].image, 100 * cols + 10 * 1 + rows)
    np.testing.assert_array_equal(coronal[1].image, np.transpose(volume.array, (1, 0, 2))[1])


@pytest.mark.parametrize("axis", AXES)
def test_pixel_to_ijk_points_at_the_voxel_the_pixel_shows(axis):
    volume = index_coded_volume(nk=4, nj=6, ni=5)
    for frame in frames_along(volume, axis):
        rows, cols = np.indices(frame.shape)
        ijk = frame.pixel_to_ijk(np.stack([cols.ravel(), rows.ravel()], axis=1)).round().astype(int)
        np.testing.assert_array_equal(volume.array[ijk[:, 2], ijk[:, 1], ijk[:, 0]], frame.image.ravel())


def test_sagittal_physical_mapping_known_by_construction():
    volume = index_coded_volume(nk=6, nj=5, ni=4, spacing=(2.0, 3.0, 5.0), origin=(10.0, 20.0, 30.0))
    stack = frames_along(volume, "sagittal")
    i, j, k = 3, 2, 4
    lps = np.array([10 + 2 * i, 20 + 3 * j, 30 + 5 * k], dtype=float)
    np.testing.assert_allclose(stack.physical_to_slice(lps), [[j, k, i]])  # x = j, y = k, slice = i
    frame = stack[i]
    np.testing.assert_allclose(frame.physical_to_pixel(lps), [[j, k, 0.0]])
    assert frame.image[k, j] == 100 * i + 10 * j + k
    assert frame.pixel_spacing == (3.0, 5.0) and frame.slice_spacing == 2.0
    np.testing.assert_allclose(frame.pixel_to_physical([j, k], "ras"), [lps * [-1, -1, 1]])


def test_to_volume_array_inverts_slicing():
    volume = index_coded_volume(nk=4, nj=6, ni=5)
    for axis in AXES:
        stack = frames_along(volume, axis)
        rebuilt = stack.to_volume_array([frame.image for frame in stack], dtype=np.int32)
        np.testing.assert_array_equal(rebuilt, volume.array)
    with pytest.raises(ImageError, match="shape"):
        frames_along(volume, "axial").to_volume_array({0: np.zeros((2, 2))})


# ---- physical ↔ pixel round trips on random geometry ---------------------------------------------
@FAST
@given(
    volume=volumes(),
    axis=st.sampled_from(AXES),
    space=st.sampled_from(["lps", "ras"]),
    fractions=st.lists(st.floats(0, 1), min_size=3, max_size=3),
)
def test_physical_pixel_round_trip(volume: Volume, axis, space, fractions):
    stack = frames_along(volume, axis)
    ijk = np.array(fractions) * (np.array(volume.shape_ijk) - 1)
    point = volume.index_to_physical(ijk, space)
    x, y, s = stack.physical_to_slice(point, space)[0]
    n = int(np.floor(s + 0.5))
    frame = stack[n]
    xyd = frame.physical_to_pixel(point, space)[0]
    np.testing.assert_allclose(xyd, [x, y, s - n], atol=1e-7)
    np.testing.assert_allclose(frame.pixel_to_physical(xyd, space)[0], point, atol=1e-7)
    np.testing.assert_allclose(frame.pixel_to_ijk(xyd)[0], ijk, atol=1e-7)
    np.testing.assert_allclose(frame.ijk_to_pixel(ijk)[0], xyd, atol=1e-7)
    assert frame.contains(xyd[:2])[0]


@FAST
@given(volume=volumes(), axis=st.sampled_from(AXES), u=st.floats(0, 1), v=st.floats(0, 1))
def test_square_frame_is_exact(volume: Volume, axis, u, v):
    frame = frames_along(volume, axis)[0]
    square = frame.square()
    sx, sy = square.pixel_spacing
    height, width = frame.shape
    # square within the rounding of the pixel count, and never coarser than the parent's finer axis
    assert abs(sx - sy) <= max(sx, sy) / min(square.shape) + 1e-9
    # the image extent (pixel edges) is the same physical rectangle
    for edge in ([-0.5, -0.5], [width - 0.5, -0.5], [-0.5, height - 0.5], [width - 0.5, height - 0.5]):
        mapped = frame.map_pixels(edge, square)[0]
        np.testing.assert_allclose(square.pixel_to_physical(mapped), frame.pixel_to_physical(edge), atol=1e-7)
    back = square.map_pixels(frame.map_pixels([u * (width - 1), v * (height - 1)], square), frame)[0]
    np.testing.assert_allclose(back, [u * (width - 1), v * (height - 1), 0.0], atol=1e-9)
    assert square.shape == square.image.shape[:2]


def test_square_upsamples_rows_and_mask_comes_back_exactly():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(6, 7), dtype=np.uint8).astype(np.float32)
    volume = Volume(image[None], spacing=(1.0, 3.0, 1.0))  # rows 3x coarser than columns
    frame = frames_along(volume, "axial")[0]
    square = frame.square()
    assert square.shape == (18, 7) and square.pixel_spacing == (1.0, 1.0)
    # a new row 3r + 1 sits exactly on old row r's centre
    np.testing.assert_allclose(square.image[1::3], image, atol=1e-4)
    mask = np.zeros((6, 7), bool)
    mask[1:4, 2:6] = True
    upsampled = np.repeat(mask, 3, axis=0)  # the same region on the square grid, by construction
    for method in ("linear", "nearest"):
        np.testing.assert_array_equal(square.mask_to_parent(upsampled, method), mask)
    assert frame.square() is not frame and square.parent is frame
    isotropic = frames_along(Volume(np.zeros((1, 4, 4))), "axial")[0]
    assert isotropic.square() is isotropic


def test_square_respects_max_side():
    frame = frames_along(Volume(np.zeros((1, 100, 10)), spacing=(10.0, 1.0, 1.0)), "axial")[0]
    square = frame.square(max_side=50)
    assert max(square.shape) == 50 and square.shape == (50, 50)


# ---- prompts from physical markups ---------------------------------------------------------------
def _roi(center_lps, axes, size, name="R"):
    return MarkupRoi(np.asarray(center_lps, float), np.asarray(axes, float), np.asarray(size, float), name)


def test_roi_rotated_30_degrees_in_plane_maps_to_the_right_box():
    volume = Volume(np.zeros((20, 80, 100), np.uint8), spacing=(0.5, 0.5, 1.0), origin=(-5.0, 3.0, 0.0))
    stack = frames_along(volume, "axial")
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    center_ijk = np.array([50.0, 40.0, 10.0])
    roi = _roi(volume.index_to_physical(center_ijk), [[c, -s, 0], [s, c, 0], [0, 0, 1]], [10.0, 5.0, 4.0])
    boxes = roi_to_boxes(stack, roi)
    # half extents in mm: x = 5 cos30 + 2.5 sin30, y = 5 sin30 + 2.5 cos30; pixels are 0.5 mm
    half_x, half_y = (5 * c + 2.5 * s) / 0.5, (5 * s + 2.5 * c) / 0.5
    expected = np.array([50 - half_x, 40 - half_y, 50 + half_x, 40 + half_y]) + 0.5
    assert sorted(boxes) == [8, 9, 10, 11, 12]  # z from 8 mm to 12 mm, slices 1 mm apart
    for box in boxes.values():
        np.testing.assert_allclose(box, expected, atol=1e-9)


def test_roi_rotated_about_the_sagittal_normal():
    volume = Volume(np.zeros((40, 30, 20), np.float32), spacing=(0.5, 0.5, 2.0))
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    roi = _roi([5.0, 7.0, 40.0], [[1, 0, 0], [0, c, -s], [0, s, c]], [3.0, 6.0, 10.0])
    boxes = roi_to_boxes(frames_along(volume, "sagittal"), roi)
    half_y_mm, half_z_mm = 3 * c + 5 * s, 3 * s + 5 * c  # frame x = j (0.5 mm), frame y = k (2 mm)
    expected = np.array([14 - half_y_mm / 0.5, 20 - half_z_mm / 2, 14 + half_y_mm / 0.5, 20 + half_z_mm / 2]) + 0.5
    assert sorted(boxes) == list(range(7, 14))  # x from 3.5 mm to 6.5 mm = i 7..13
    for box in boxes.values():
        np.testing.assert_allclose(box, expected, atol=1e-9)


def test_tilted_roi_box_per_slice_matches_dense_sampling():
    volume = Volume(np.zeros((30, 60, 60), np.uint8))  # identity geometry: slice coords = ijk
    stack = frames_along(volume, "axial")
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    axes = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])  # tilted 30° about y, out of the axial plane
    roi = _roi([30.0, 30.0, 15.0], axes, [20.0, 10.0, 8.0])
    boxes = roi_to_boxes(stack, roi)
    # oracle: sample the ROI densely and take each slab's bounds
    g = np.linspace(-0.5, 0.5, 81)
    u, v, w = np.meshgrid(g, g, g, indexing="ij")
    samples = np.array([30.0, 30.0, 15.0]) + (np.stack([u, v, w], -1).reshape(-1, 3) * [20, 10, 8]) @ axes.T
    slab = np.floor(samples[:, 2] + 0.5).astype(int)
    assert sorted(boxes) == sorted(set(slab.tolist()))
    step = 20 / 80  # sampling resolution along the long axis
    for n, box in boxes.items():
        inside = samples[slab == n]
        expected = np.concatenate([inside[:, :2].min(0), inside[:, :2].max(0)]) + 0.5
        np.testing.assert_allclose(box, expected, atol=step * 1.5)


def test_flat_roi_on_a_2d_image_and_points():
    volume = Volume(np.zeros((1, 50, 60), np.uint8), spacing=(0.2, 0.2, 1.0))
    stack = frames_along(volume, "axial")
    roi = _roi(volume.index_to_physical([30, 20, 0.3]), np.eye(3), [4.0, 2.0, 0.0])  # 20 x 10 pixels, flat
    points = (
        MarkupPoint(volume.index_to_physical([12.0, 7.0, -0.2]), "F-1", number=1),
        MarkupPoint(volume.index_to_physical([40.0, 30.0, 0.1]), "-F-2", negative=True, number=2),
    )
    prompts = prompts_from_markups(stack, Markups(points, (roi,)))
    assert list(prompts) == [0]
    frame_prompts = prompts[0]
    np.testing.assert_allclose(frame_prompts.points, [[12, 7], [40, 30]], atol=1e-9)
    np.testing.assert_array_equal(frame_prompts.labels, [1, 0])
    np.testing.assert_allclose(frame_prompts.box, [20.5, 15.5, 40.5, 25.5], atol=1e-9)
    kwargs = frame_prompts.predict_kwargs()
    assert kwargs["points"].shape == (2, 2) and kwargs["box"].shape == (4,)


def test_roi_fit_to_volume_covers_exactly_the_image():
    volume = Volume(np.zeros((5, 10, 12), np.uint8))
    stack = frames_along(volume, "axial")
    roi = _roi([5.5, 4.5, 2.0], np.eye(3), [12.0, 10.0, 5.0])  # edges at -0.5 .. n - 0.5
    boxes = roi_to_boxes(stack, roi)
    assert sorted(boxes) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(boxes[2], [0, 0, 12, 10])


def test_prompt_errors_name_the_prompt_and_the_range():
    volume = Volume(np.zeros((10, 20, 40), np.uint8))
    stack = frames_along(volume, "sagittal")
    far = MarkupPoint(np.array([41.7, 5.0, 5.0]), "F-3", number=3)
    with pytest.raises(
        PromptError, match=r"point 3 \('F-3', RAS \(-41.70, -5.00, 5.00\)\) lies at sagittal slice 41.7, outside 0..39"
    ):
        prompts_from_markups(stack, Markups((far,)))
    off = MarkupPoint(np.array([3.0, 25.0, 5.0]), "F-1", number=1)
    with pytest.raises(PromptError, match=r"pixel \(25.0, 5.0\) of sagittal slice 3, outside the 20x10 image"):
        prompts_from_markups(stack, Markups((off,)))
    with pytest.raises(PromptError, match=r"lies at sagittal slices 50.0..54.0, outside 0..39"):
        roi_to_boxes(stack, _roi([52.0, 5.0, 5.0], np.eye(3), [4, 4, 4]))
    with pytest.raises(PromptError, match="does not intersect"):
        roi_to_boxes(stack, _roi([10.0, 100.0, 5.0], np.eye(3), [4, 4, 4]))
    with pytest.raises(PromptError, match="degenerate"):
        roi_to_boxes(stack, _roi([10.0, 5.0, 5.0], np.eye(3), [4, 0.2, 4]))
    with pytest.raises(PromptError, match="no prompts"):
        prompts_from_markups(stack, Markups())


def test_two_rois_on_one_slice_are_refused():
    stack = frames_along(Volume(np.zeros((5, 20, 20), np.uint8)), "axial")
    rois = (_roi([5.0, 5.0, 2.0], np.eye(3), [4, 4, 1], "A"), _roi([12.0, 12.0, 2.0], np.eye(3), [4, 4, 1], "B"))
    with pytest.raises(PromptError, match="two ROIs"):
        prompts_from_markups(stack, Markups((), rois))


def test_pixel_prompts_validate_and_map_to_square_frames():
    with pytest.raises(PromptError, match="outside the 30x20 image"):
        pixel_prompts((20, 30), points=[[30.0, 5.0]])
    with pytest.raises(PromptError, match="degenerate"):
        pixel_prompts((20, 30), box=[5, 5, 5.5, 10])
    with pytest.raises(PromptError, match="no prompts"):
        pixel_prompts((20, 30))
    clipped = check_on_frame(FramePrompts(0, box=[-4, 2, 10, 40]), (20, 30))
    np.testing.assert_allclose(clipped.box, [0, 2, 10, 20])

    frame = frames_along(Volume(np.zeros((1, 10, 12)), spacing=(1.0, 2.0, 1.0)), "axial")[0]
    square = frame.square()
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True  # COCO box [3, 2, 9, 5]
    prompts = FramePrompts(0, [[3.0, 2.0]], [1], [3, 2, 9, 5])
    on_square = prompts.mapped(frame, square)
    # rows doubled: the box of the doubled mask, and the point at the centre of its 2-row block
    np.testing.assert_allclose(on_square.box, [3, 4, 9, 10])
    np.testing.assert_allclose(on_square.points, [[3.0, 4.5]])
    np.testing.assert_allclose(on_square.mapped(square, frame).box, prompts.box)


def test_stack_indexing():
    stack = FrameStack(Volume(np.zeros((3, 4, 5))), "coronal")
    assert stack[-1].index == 3 and [f.index for f in stack[1:3]] == [1, 2]
    with pytest.raises(IndexError):
        stack[4]
    with pytest.raises(ValueError, match="axis"):
        FrameStack(Volume(np.zeros((3, 4, 5))), "oblique")
