"""Markups files written by the real Slicer markups storage node (slicer-core), read by ours.

The expected voxel indices come from Slicer: the volume is loaded with Slicer's own reader and
its RAS→IJK matrix maps the points; our reader and volume geometry must land on the same IJK.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from ultrasam.errors import PromptError
from ultrasam.frames import frames_along
from ultrasam.markups import MarkupRoi, read_markups, read_prompt_files, write_mrk_json
from ultrasam.prompts import prompts_from_markups
from ultrasam.volume import Volume, load_volume

slicer = pytest.importorskip("slicer")
import mrml_helpers as mh  # noqa: E402


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.atleast_2d(points)
    return pts @ matrix[:3, :3].T + matrix[:3, 3]


@pytest.fixture()
def app():
    return mh.create_headless_slicer()


@pytest.fixture()
def oblique_volume_file(tmp_path):
    """An oblique, flipped (x and y), anisotropic, right-handed volume written by SimpleITK."""
    angle = np.radians(25)
    c, s = np.cos(angle), np.sin(angle)
    direction = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]) @ np.diag([-1.0, -1.0, 1.0])
    rng = np.random.default_rng(1)
    volume = Volume(
        rng.integers(0, 200, (12, 30, 40)).astype(np.int16),
        spacing=(0.3, 0.45, 1.7),
        origin=(12.0, -40.0, 7.5),
        direction=direction,
    )
    path = tmp_path / "oblique.nrrd"
    sitk.WriteImage(volume.to_sitk(), str(path))
    return path


def test_volume_geometry_agrees_with_slicer_reader(app, oblique_volume_file):
    node = mh.load_volume_node(app, oblique_volume_file)
    volume = load_volume(oblique_volume_file)
    np.testing.assert_allclose(volume.ijk_to_ras(), mh.ijk_to_ras_matrix(node), atol=1e-9)
    np.testing.assert_allclose(volume.physical_to_ijk("ras"), mh.ras_to_ijk_matrix(node), atol=1e-9)
    np.testing.assert_array_equal(mh.volume_node_array(node), volume.array)


def test_left_handed_volume_slicer_reverses_k_but_physical_space_agrees(app, tmp_path):
    """Slicer's reader turns a left-handed grid right-handed by reversing k; positions agree."""
    volume = Volume(
        np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6),
        spacing=(0.3, 0.45, 1.7),
        origin=(1.0, 2.0, 3.0),
        direction=np.diag([1.0, -1.0, 1.0]),
    )
    path = tmp_path / "left.nrrd"
    sitk.WriteImage(volume.to_sitk(), str(path))
    node = mh.load_volume_node(app, path)
    reverse_k = np.eye(4)
    reverse_k[2, 2], reverse_k[2, 3] = -1.0, 3.0  # k' = (nk - 1) - k
    np.testing.assert_allclose(mh.ijk_to_ras_matrix(node), load_volume(path).ijk_to_ras() @ reverse_k, atol=1e-9)
    np.testing.assert_array_equal(mh.volume_node_array(node), volume.array[::-1])


@pytest.mark.parametrize("system", ["LPS", "RAS"])
def test_slicer_point_list_lands_on_slicer_ijk(app, tmp_path, oblique_volume_file, system):
    node = mh.load_volume_node(app, oblique_volume_file)
    ijk_wanted = np.array([[3.0, 4.0, 5.0], [20.25, 10.5, 2.0], [39.0, 29.0, 11.0]])
    ras = _apply(np.linalg.inv(mh.ras_to_ijk_matrix(node)), ijk_wanted)  # Slicer's own geometry
    fiducials = mh.add_fiducial_node(app, ras, labels=["F-1", "-F-2", "F-3"], descriptions=["", "", "Negative click"])
    fiducials.SetNthControlPointSelected(0, False)
    path = mh.write_markups_node(app, fiducials, tmp_path / f"points_{system}.mrk.json", system)
    assert json.loads(path.read_text())["markups"][0]["coordinateSystem"] == system

    markups = read_markups(path)
    volume = load_volume(oblique_volume_file)
    np.testing.assert_allclose(volume.physical_to_index(markups.positions("lps"), "lps"), ijk_wanted, atol=1e-6)
    np.testing.assert_allclose(markups.positions("ras"), ras, atol=1e-6)
    np.testing.assert_array_equal(markups.labels, [1, 0, 0])  # "-" label, "negative" description
    assert [p.selected for p in markups.points] == [False, True, True]
    assert [p.label for p in markups.points] == ["F-1", "-F-2", "F-3"]

    prompts = prompts_from_markups(frames_along(volume, "sagittal"), markups)
    assert sorted(prompts) == [3, 20, 39]  # slices of constant i
    np.testing.assert_allclose(prompts[20].points, [[10.5, 2.0]], atol=1e-6)  # x = j, y = k


@pytest.mark.parametrize("system", ["LPS", "RAS"])
def test_slicer_rotated_roi_corners_match(app, tmp_path, system):
    angle = np.radians(30)
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.array(
        [[1, 0, 0], [0, np.cos(0.2), -np.sin(0.2)], [0, np.sin(0.2), np.cos(0.2)]]
    )
    roi_node = mh.add_roi_node(app, [10.0, -20.0, 30.0], [8.0, 4.0, 6.0], rotation)
    path = mh.write_markups_node(app, roi_node, tmp_path / f"roi_{system}.mrk.json", system)
    markups = read_markups(path)
    assert not markups.points and len(markups.rois) == 1
    roi = markups.rois[0]
    # Slicer's corners: object→world matrix applied to ±size/2
    object_to_world = mh.matrix_to_numpy(roi_node.GetObjectToWorldMatrix())
    size = np.array(roi_node.GetSize())
    signs = np.array([[(n >> a) & 1 for a in range(3)] for n in range(8)], dtype=float) * 2 - 1
    expected_ras = _apply(object_to_world, signs * size / 2)
    np.testing.assert_allclose(roi.corners("ras"), expected_ras, atol=1e-6)
    np.testing.assert_allclose(roi.size, [8, 4, 6])


def test_our_writer_is_read_by_slicer(app, tmp_path):
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    axes_lps = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    roi = MarkupRoi(np.array([1.0, 2.0, 3.0]), axes_lps, np.array([5.0, 6.0, 7.0]), "box")
    points_ras = np.array([[1.0, 2.0, 3.0], [-4.0, 5.5, 6.0]])
    for system in ("LPS", "RAS"):
        path = write_mrk_json(
            tmp_path / f"ours_{system}.mrk.json",
            points_ras,
            labels=[1, 0],
            roi=roi,
            space="ras",
            coordinate_system=system,
        )
        node = mh.read_markups_file(app, path)  # Slicer reads the first markup of the file
        assert node.GetNumberOfControlPoints() == 2
        got = np.array([node.GetNthControlPointPositionWorld(n) for n in range(2)])
        np.testing.assert_allclose(got, points_ras, atol=1e-9)
        assert node.GetNthControlPointLabel(1).startswith("-")
        ours = read_markups(path)
        np.testing.assert_array_equal(ours.labels, [1, 0])
        np.testing.assert_allclose(ours.rois[0].corners("lps"), roi.corners("lps"), atol=1e-9)
    # LPS, Slicer's default: slicer-core 5.13 reads an ROI's centre and orientation as LPS even in
    # a file that says RAS (its own RAS files included), so ROIs for Slicer are written in LPS.
    roi_only = write_mrk_json(tmp_path / "roi_only.mrk.json", roi=roi)
    roi_node = mh.read_markups_file(app, roi_only)
    assert roi_node.IsA("vtkMRMLMarkupsROINode")
    object_to_world = mh.matrix_to_numpy(roi_node.GetObjectToWorldMatrix())
    np.testing.assert_allclose(object_to_world[:3, 3], roi.center * [-1, -1, 1], atol=1e-9)
    np.testing.assert_allclose(object_to_world[:3, :3], np.diag([-1, -1, 1]) @ axes_lps, atol=1e-9)
    np.testing.assert_allclose(roi_node.GetSize(), [5, 6, 7])


def test_negative_file_and_merging(tmp_path):
    positive = write_mrk_json(tmp_path / "pos.mrk.json", [[1, 2, 3]])
    negative = write_mrk_json(tmp_path / "neg.mrk.json", [[4, 5, 6], [7, 8, 9]])
    merged = read_prompt_files([positive], [negative])
    np.testing.assert_array_equal(merged.labels, [1, 0, 0])
    assert [p.number for p in merged.points] == [1, 2, 3]
    assert read_markups(negative, negative=True).labels.tolist() == [0, 0]


def _write(path, markups):
    path.write_text(json.dumps({"@schema": "x", "markups": markups}))
    return path


def test_reader_errors(tmp_path):
    point = {"label": "F-1", "position": [1, 2, 3]}
    with pytest.raises(PromptError, match="unknown coordinateSystem 'XYZ'"):
        read_markups(
            _write(tmp_path / "a.mrk.json", [{"type": "Fiducial", "coordinateSystem": "XYZ", "controlPoints": [point]}])
        )
    with pytest.raises(PromptError, match="no placed control points"):
        read_markups(_write(tmp_path / "b.mrk.json", [{"type": "Fiducial", "controlPoints": []}]))
    undefined = {"label": "F-1", "position": [0, 0, 0], "positionStatus": "undefined"}
    with pytest.raises(PromptError, match="no placed control points"):
        read_markups(_write(tmp_path / "c.mrk.json", [{"type": "Fiducial", "controlPoints": [undefined]}]))
    with pytest.raises(PromptError, match="type 'Line'"):
        read_markups(_write(tmp_path / "d.mrk.json", [{"type": "Line", "controlPoints": [point, point]}]))
    with pytest.raises(PromptError, match="coordinateUnits"):
        read_markups(
            _write(tmp_path / "e.mrk.json", [{"type": "Fiducial", "coordinateUnits": "inch", "controlPoints": [point]}])
        )
    (tmp_path / "f.mrk.json").write_text("{not json")
    with pytest.raises(PromptError, match="not a valid markups JSON"):
        read_markups(tmp_path / "f.mrk.json")
    with pytest.raises(PromptError, match="not found"):
        read_markups(tmp_path / "missing.mrk.json")
    with pytest.raises(PromptError, match="no 'markups' list"):
        read_markups(_write(tmp_path / "g.mrk.json", None))


def test_units_and_default_coordinate_system(tmp_path):
    path = _write(
        tmp_path / "um.mrk.json",
        [{"type": "Fiducial", "coordinateUnits": "um", "controlPoints": [{"position": [1000, 2000, 3000]}]}],
    )
    np.testing.assert_allclose(read_markups(path).positions("lps"), [[1, 2, 3]])  # LPS is the schema default


def test_writer_refuses_to_overwrite(tmp_path):
    path = write_mrk_json(tmp_path / "p.mrk.json", [[1, 2, 3]])
    before = path.read_bytes()
    from ultrasam.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        write_mrk_json(path, [[9, 9, 9]])
    assert path.read_bytes() == before
    write_mrk_json(path, [[9, 9, 9]], overwrite=True)
    np.testing.assert_allclose(read_markups(path).positions("lps"), [[9, 9, 9]])
