"""Volume converters (ACOUSLIC, CAMUS, CardiacUDC, EchoCP, FH-PS-AOP, MicroSeg, MUP, regPro, Segthy).

Every test writes a tiny raw folder in the dataset's published layout with SimpleITK (.mha,
.nii.gz, .nii), draws rectangles of known pixel counts into the label volumes and checks the COCO
written: images kept, instances per category, each instance's area and box (where the released
converter flipped the slices), ids, splits, windowing and the pairs skipped.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from ultrasam_training.data.coco import resolve_image_path
from ultrasam_training.data.convert import run_converter
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.masks import decode_rle
from ultrasam_training.data.validate import validate

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")
VOLUME_KEYS = ("acouslic", "camus", "cardiacudc", "echocp", "fh_ps_aop", "microseg", "mup", "regpro", "segthy")


# ---------------------------------------------------------------- builders and readers


def write(path: Path, array: np.ndarray, *, vector: bool = False, spacing=None, direction=None) -> Path:
    """Write ``array`` ((z, y, x) as SimpleITK orders it) in the format the file name says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array, isVector=vector)
    if spacing is not None:
        image.SetSpacing(spacing)
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


def box(shape, *rects, dtype=np.uint8) -> np.ndarray:
    """Array of ``shape`` with ``(index..., value)`` rectangles: ``((z, r0, r1, c0, c1), value)``."""
    array = np.zeros(shape, dtype)
    for where, value in rects:
        z, r0, r1, c0, c1 = where
        array[z, r0:r1, c0:c1] = value
    return array


def noise(shape, low=1, high=250, seed=0, dtype=np.uint8) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, shape).astype(dtype)


def read_coco(report) -> tuple[dict, dict[str, dict], dict[str, list[tuple[str, int, list[float]]]]]:
    """(coco, images by source_path, sorted (category, area, bbox) per source_path); checks each area."""
    assert validate(report.coco_path, check_files=True) == []
    coco = json.loads(Path(report.coco_path).read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    images = {image["source_path"]: image for image in coco["images"]}
    by_id = {image["id"]: image["source_path"] for image in coco["images"]}
    instances = defaultdict(list)
    for annotation in coco["annotations"]:
        decoded = decode_rle(annotation["segmentation"])
        assert annotation["area"] == int(decoded.sum())
        instances[by_id[annotation["image_id"]]].append(
            (names[annotation["category_id"]], int(decoded.sum()), [float(v) for v in annotation["bbox"]])
        )
    return coco, images, {key: sorted(value) for key, value in instances.items()}


def pixels(report, image: dict) -> np.ndarray:
    return np.asarray(Image.open(resolve_image_path(report.coco_path, image["file_name"])))


def areas(found) -> list[tuple[str, int]]:
    return [(name, area) for name, area, _ in found]


def skipped(report) -> dict[str, str]:
    return {problem.path: problem.reason for problem in report.skipped}


def excluded(report) -> dict[str, str]:
    return {problem.path: problem.reason for problem in report.excluded}


# ---------------------------------------------------------------- layout errors (all nine)


@pytest.mark.parametrize("key", VOLUME_KEYS)
def test_unrecognised_layout_raises(key, tmp_path):
    raw = tmp_path / "raw"
    (raw / "something_else").mkdir(parents=True)
    (raw / "readme.txt").write_text("not a dataset")
    with pytest.raises(DatasetError, match="expected"):
        run_converter(key, raw, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "annotations").exists()


# ---------------------------------------------------------------- ACOUSLIC


def test_acouslic_keeps_annotated_frames_merges_planes_and_names_patients(tmp_path):
    root = tmp_path / "raw" / "acouslic-ai-train-set"
    shape = (6, 20, 24)
    sweep = noise(shape)
    write(root / "images/stacked_fetal_ultrasound/aaa-111.mha", sweep)
    mask = box(
        shape,
        ((1, 2, 6, 3, 8), 1),  # optimal plane, 4x5 = 20 px
        ((3, 1, 4, 1, 4), 2),
        ((3, 10, 12, 10, 14), 2),  # suboptimal plane, two components 9 + 8 px
        ((4, 2, 5, 2, 5), 1),
        ((4, 2, 5, 5, 7), 2),  # touching 1 and 2: one abdomen of 9 + 6 px
    )
    write(root / "masks/stacked_fetal_abdomen/aaa-111.mha", mask)
    write(root / "images/stacked_fetal_ultrasound/bbb-222.mha", sweep)  # no mask: skipped
    write(root / "masks/stacked_fetal_abdomen/ccc-333.mha", mask)  # no image: skipped
    (root / "circumferences").mkdir()
    with open(root / "circumferences/fetal_abdominal_circumferences_per_sweep.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["uuid", "subject_id", *(f"sweep_{n}_ac_mm" for n in range(1, 7))])
        writer.writerow(["aaa-111", "7", 300, "", "", "", "", ""])

    report = run_converter("acouslic", tmp_path / "raw", tmp_path / "out", progress=False)
    coco, images, found = read_coco(report)
    source = "images/stacked_fetal_ultrasound/aaa-111.mha"
    assert sorted(images) == [f"{source}#frame={i}" for i in (1, 3, 4)]
    assert areas(found[f"{source}#frame=1"]) == [("abdomen", 20)]
    assert areas(found[f"{source}#frame=3"]) == [("abdomen", 8), ("abdomen", 9)]
    assert areas(found[f"{source}#frame=4"]) == [("abdomen", 15)]
    assert [images[f"{source}#frame={i}"]["class_labels"] for i in (1, 3, 4)] == [
        ["optimal"],
        ["suboptimal"],
        ["optimal", "suboptimal"],
    ]
    assert {(image["patient_id"], image["case_id"]) for image in images.values()} == {("7", "aaa-111")}
    assert images[f"{source}#frame=3"]["frame"] == 3
    assert np.array_equal(pixels(report, images[f"{source}#frame=1"]), sweep[1])  # uint8 sweep untouched
    assert excluded(report) == {f"{source}#frame=0,2,5": "frames without annotation (keep_empty=True keeps them)"}
    reasons = skipped(report)
    assert set(reasons) == {"images/stacked_fetal_ultrasound/bbb-222.mha", "masks/stacked_fetal_abdomen/ccc-333.mha"}
    assert "no label volume" in reasons["images/stacked_fetal_ultrasound/bbb-222.mha"]


# ---------------------------------------------------------------- CAMUS


def _camus_sequence(frames: int) -> np.ndarray:
    image = noise((frames, 20, 24), 1, 900, dtype=np.uint16)
    image[:, :, :3] = 0  # outside the sector
    image[0, 0, 23] = 1000  # the maximum of the sequence
    image[0, 19, 23] = 256  # 16-bit value that an 8-bit cast would wrap to 0
    return image


def test_camus_frames_labels_sector_split_and_16_bit_windowing(tmp_path):
    root = tmp_path / "raw" / "CAMUS_public"
    nifti = root / "database_nifti"
    image = _camus_sequence(3)
    label = box(
        image.shape,
        ((0, 2, 6, 5, 9), 1),
        ((0, 2, 6, 12, 15), 2),
        ((0, 12, 15, 12, 16), 3),  # 16, 12, 12 px
        ((0, 10, 12, 0, 5), 1),  # 2x5, of which cols 0-2 lie where the image is 0: 2x2 = 4 px remain
        ((1, 8, 11, 8, 11), 3),  # 9 px
    )
    write(nifti / "patient0001/patient0001_2CH_half_sequence.nii.gz", image)
    write(nifti / "patient0001/patient0001_2CH_half_sequence_gt.nii.gz", label)
    write(nifti / "patient0001/patient0001_2CH_ED.nii.gz", image[:1])  # ED/ES copies are not read
    write(nifti / "patient0001/patient0001_4CH_half_sequence.nii.gz", image)  # no _gt: skipped
    write(nifti / "patient0002/patient0002_2CH_half_sequence.nii.gz", image)
    write(nifti / "patient0002/patient0002_2CH_half_sequence_gt.nii.gz", label[:2])  # 2 frames for 3: skipped
    write(nifti / "patient0002/patient0002_4CH_half_sequence.nii.gz", image[:1])
    write(nifti / "patient0002/patient0002_4CH_half_sequence_gt.nii.gz", label[1:2])
    (root / "database_split").mkdir(parents=True)
    (root / "database_split/subgroup_training.txt").write_text("patient0001\n")
    (root / "database_split/subgroup_testing.txt").write_text("patient0002\n")

    report = run_converter("camus", tmp_path / "raw", tmp_path / "out", progress=False)
    coco, images, found = read_coco(report)
    first = "database_nifti/patient0001/patient0001_2CH_half_sequence.nii.gz"
    other = "database_nifti/patient0002/patient0002_4CH_half_sequence.nii.gz"
    assert sorted(images) == [f"{first}#frame=0", f"{first}#frame=1", f"{other}#frame=0"]
    assert areas(found[f"{first}#frame=0"]) == [
        ("atrium_wall", 12),
        ("endocardium", 4),
        ("endocardium", 16),
        ("epicardium", 12),
    ]
    assert areas(found[f"{first}#frame=1"]) == [("atrium_wall", 9)]
    assert areas(found[f"{other}#frame=0"]) == [("atrium_wall", 9)]
    assert [
        (images[k]["patient_id"], images[k]["case_id"], images[k]["split"], images[k]["view"]) for k in sorted(images)
    ] == [("patient0001", "patient0001_2CH", "train", "2CH")] * 2 + [("patient0002", "patient0002_4CH", "test", "4CH")]
    written = pixels(report, images[f"{first}#frame=0"])
    assert written.dtype == np.uint8
    assert written[19, 23] == round(256 * 255 / 1000) != 0  # windowed once over the sequence (0..1000)
    assert written[0, 23] == 255 and written[5, 0] == 0
    assert np.array_equal(
        pixels(report, images[f"{first}#frame=1"]), np.round(image[1].astype(float) * 255 / 1000).astype(np.uint8)
    )
    reasons = skipped(report)
    assert set(reasons) == {
        "database_nifti/patient0001/patient0001_4CH_half_sequence.nii.gz",
        "database_nifti/patient0002/patient0002_2CH_half_sequence.nii.gz",
    }
    assert "(2, 20, 24)" in reasons["database_nifti/patient0002/patient0002_2CH_half_sequence.nii.gz"]
    assert excluded(report) == {f"{first}#frame=2": "frames without annotation (keep_empty=True keeps them)"}


# ---------------------------------------------------------------- CardiacUDC


def _cardiac_label() -> np.ndarray:
    label = box(
        (4, 20, 20),
        ((0, 2, 8, 2, 8), 1),
        ((0, 4, 6, 4, 6), 0),  # LV ring 6x6 with a 2x2 hole: filled to 36 px
        ((0, 12, 15, 10, 14), 4),  # RV 3x4 = 12 px
        ((1, 5, 8, 5, 8), 2),  # LA 9 px: under 2.5 % of 400 px
        ((3, 1, 4, 1, 5), 6),
        ((3, 10, 12, 10, 12), 6),  # LV2: two components 12 + 4 px
    )
    return label


def test_cardiacudc_fills_holes_drops_small_frames_and_flips(tmp_path):
    root = tmp_path / "raw" / "cardiacUDC_dataset"
    image = noise((4, 20, 20))
    write(root / "Site_G_100/patient-67-4_image.nii.gz", image)
    write(root / "Site_G_100/patient-67-4_label.nii.gz", _cardiac_label())
    write(root / "label_all_frame/normal-3-4_image.nii.gz", image[:1])
    write(root / "label_all_frame/normal-3-4_label.nii.gz", _cardiac_label()[:1])
    write(root / "Site_R_52/patient-5-4_image.nii.gz", image)  # no label: skipped

    report = run_converter("cardiacudc", tmp_path / "raw", tmp_path / "out", progress=False)
    coco, images, found = read_coco(report)
    seq = "Site_G_100/patient-67-4_image.nii.gz"
    normal = "label_all_frame/normal-3-4_image.nii.gz"
    assert sorted(images) == sorted([normal + "#frame=0", seq + "#frame=0", seq + "#frame=3"])
    frame0 = found[seq + "#frame=0"]
    assert areas(frame0) == [("left_ventricle", 36), ("right_ventricle", 12)]
    # diagonal flip (mmcv: both axes) of rows 12-14, cols 10-13 in a 20x20 frame
    assert [bbox for name, _, bbox in frame0 if name == "right_ventricle"] == [[6.0, 5.0, 4.0, 3.0]]
    assert areas(found[seq + "#frame=3"]) == [("left_ventricle_2", 4), ("left_ventricle_2", 12)]
    assert np.array_equal(pixels(report, images[seq + "#frame=3"]), image[3][::-1, ::-1])
    assert images[seq + "#frame=0"]["patient_id"] == "Site_G_100/patient-67"
    assert images[normal + "#frame=0"]["patient_id"] == "label_all_frame/normal-3"
    assert images[normal + "#frame=0"]["class_labels"] == ["normal"]
    assert images[seq + "#frame=0"]["case_id"] == "patient-67-4"
    assert "min_foreground" in excluded(report)[seq + "#frame=1"]
    assert "without annotation" in excluded(report)[seq + "#frame=2"]
    assert "no label volume" in skipped(report)["Site_R_52/patient-5-4_image.nii.gz"]

    everything = run_converter("cardiacudc", tmp_path / "raw", tmp_path / "all", progress=False, min_foreground=0)
    _, images_all, found_all = read_coco(everything)
    assert areas(found_all[seq + "#frame=1"]) == [("left_atrium", 9)] and len(images_all) == 4


def test_cardiacudc_archives_only_asks_for_extraction(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "cardiacUDC_dataset.7z").write_bytes(b"7z\xbc\xaf\x27\x1c")
    with pytest.raises(DatasetError, match="extract them first"):
        run_converter("cardiacudc", raw, tmp_path / "out", progress=False)


# ---------------------------------------------------------------- EchoCP


def test_echocp_any_label_is_a_chamber_and_truncated_labels_are_skipped(tmp_path):
    root = tmp_path / "raw" / "EchoCP_dataset"
    image = noise((3, 16, 18))
    label = box(image.shape, ((1, 2, 5, 2, 6), 1), ((1, 5, 7, 2, 6), 2), ((1, 10, 13, 12, 15), 3))  # 12+8 px, 9 px
    write(root / "001_r_image.nii.gz", image)
    write(root / "001_r_label.nii.gz", label)
    write(root / "001_v_image.nii.gz", image)
    whole = write(tmp_path / "whole.nii.gz", label).read_bytes()
    (root / "001_v_label.nii.gz").write_bytes(whole[: len(whole) // 2])  # truncated download

    report = run_converter("echocp", tmp_path / "raw", tmp_path / "out", progress=False)
    coco, images, found = read_coco(report)
    assert list(images) == ["001_r_image.nii.gz#frame=1"]
    frame = found["001_r_image.nii.gz#frame=1"]
    assert areas(frame) == [("chamber", 9), ("chamber", 20)]
    assert [bbox for _, area, bbox in frame if area == 9] == [[3.0, 3.0, 3.0, 3.0]]  # rows 10-12, cols 12-14 flipped
    image_entry = images["001_r_image.nii.gz#frame=1"]
    assert (image_entry["patient_id"], image_entry["case_id"], image_entry["action"]) == ("001", "001_r", "rest")
    assert set(skipped(report)) == {"001_v_image.nii.gz"}


# ---------------------------------------------------------------- FH-PS-AOP


def test_fh_ps_aop_first_plane_two_structures_and_bad_pairs(tmp_path):
    root = tmp_path / "raw" / "Pubic Symphysis-Fetal Head Segmentation and Angle of Progression"
    planes = np.stack([noise((32, 40), seed=s) for s in range(3)])
    yy, xx = np.mgrid[:32, :40]
    head = (yy - 20) ** 2 + (xx - 24) ** 2 <= 36
    label = np.zeros((32, 40), np.uint8)
    label[head] = 2
    label[3:7, 3:9] = 1  # 24 px
    label[0, 39] = 7  # nobody maps 7
    write(root / "image_mha/00001.mha", planes)
    write(root / "label_mha/00001.mha", label)
    write(root / "image_mha/00002.mha", planes)  # no label: skipped
    write(root / "image_mha/00003.mha", planes)
    write(root / "label_mha/00003.mha", label[:30])  # other size: skipped

    report = run_converter("fh_ps_aop", tmp_path / "raw", tmp_path / "out", progress=False)
    coco, images, found = read_coco(report)
    assert list(images) == ["image_mha/00001.mha"]
    assert areas(found["image_mha/00001.mha"]) == [("fetal_head", int(head.sum())), ("pubic_symphysis", 24)]
    assert images["image_mha/00001.mha"]["case_id"] == "00001"
    assert np.array_equal(pixels(report, images["image_mha/00001.mha"]), planes[0])
    assert set(skipped(report)) == {"image_mha/00002.mha", "image_mha/00003.mha"}
    assert any("[7]" in note for note in report.notes)


# ---------------------------------------------------------------- MicroSeg and MUP (same source)


def _micro_us(tmp_path: Path) -> Path:
    root = tmp_path / "raw" / "Micro_Ultrasound_Prostate_Segmentation_Dataset"
    shape = (4, 16, 20)
    image = np.random.default_rng(1).uniform(0.5, 3.0, shape).astype(np.float32)
    image[0, 0, 5] = 4.0  # the maximum
    image[0, 15, 19] = 1.0  # windowed over 0..4: 63.75 -> 64
    image[:, :, :2] = 0  # two zero columns through the whole volume
    image[0, 5, 7] = 0  # one zero voxel inside the prostate
    image[3] = 0  # an all-zero slice
    label = box(shape, ((0, 4, 8, 6, 10), 1), ((1, 10, 13, 0, 4), 1), ((3, 2, 5, 2, 5), 1))
    non_expert = box(shape, ((2, 1, 9, 1, 9), 1))
    for split in ("train", "test"):
        write(root / f"{split}/micro_ultrasound_scans/microUS_{split}_01.nii.gz", image)
        write(root / f"{split}/expert_annotations/expert_annotation_{split}_01.nii.gz", label)
    write(root / "train/non_expert_annotations/non_expert_annotation_train_01.nii.gz", non_expert)
    write(root / "train/micro_ultrasound_scans/microUS_train_02.nii.gz", image)  # no expert annotation
    return tmp_path / "raw"


def test_microseg_pairs_train_and_test_zeroes_outside_image_and_flips_both_axes(tmp_path):
    report = run_converter("microseg", _micro_us(tmp_path), tmp_path / "out", progress=False)
    coco, images, found = read_coco(report)
    train = "train/micro_ultrasound_scans/microUS_train_01.nii.gz"
    test = "test/micro_ultrasound_scans/microUS_test_01.nii.gz"
    assert sorted(images) == sorted(f"{s}#slice={i}" for s in (train, test) for i in (0, 1))
    for source, split in ((train, "train"), (test, "test")):
        assert areas(found[f"{source}#slice=0"]) == [("prostate", 15)]  # 16 minus the zero voxel
        assert [bbox for *_, bbox in found[f"{source}#slice=0"]] == [[10.0, 8.0, 4.0, 4.0]]
        assert areas(found[f"{source}#slice=1"]) == [("prostate", 6)]  # 3x4 minus the two zero columns
        assert images[f"{source}#slice=0"]["split"] == split
        assert images[f"{source}#slice=0"]["patient_id"] == f"{split}_01"
    written = pixels(report, images[f"{train}#slice=0"])
    assert written[0, 0] == 64 and written[15, 14] == 255  # (15, 19) -> (0, 0) and (0, 5) -> (15, 14)
    assert "no label volume" in skipped(report)["train/micro_ultrasound_scans/microUS_train_02.nii.gz"]
    assert excluded(report)[f"{train}#slice=2-3"].startswith("slices without annotation")


def test_mup_zeroes_background_lines_flips_vertically_and_keeps_empty_on_request(tmp_path):
    raw = _micro_us(tmp_path)
    report = run_converter("mup", raw, tmp_path / "out", progress=False)
    _, images, found = read_coco(report)
    train = "train/micro_ultrasound_scans/microUS_train_01.nii.gz"
    assert len(images) == 4
    assert areas(found[f"{train}#slice=0"]) == [("prostate", 16)]  # an isolated zero voxel is no background line
    assert [bbox for *_, bbox in found[f"{train}#slice=0"]] == [[6.0, 8.0, 4.0, 4.0]]
    assert areas(found[f"{train}#slice=1"]) == [("prostate", 6)]

    everything = run_converter("mup", raw, tmp_path / "all", progress=False, keep_empty=True)
    _, images_all, found_all = read_coco(everything)
    assert len(images_all) == 8 and everything.images == 8
    assert f"{train}#slice=2" in images_all and f"{train}#slice=2" not in found_all  # kept without instances
    limited = run_converter("mup", raw, tmp_path / "few", progress=False, keep_empty=True, limit=3)
    assert limited.images == 3


# ---------------------------------------------------------------- regPro


def test_regpro_same_sagittal_slice_of_image_and_every_label_channel(tmp_path):
    root = tmp_path / "raw" / "nifti_data"
    shape = (5, 6, 7)  # (z, y, x)
    image = noise(shape)
    channels = np.zeros((2, *shape), np.uint8)  # (c, z, y, x)
    channels[0, 0:3, 1:5, 2] = 1  # gland at x=2: 3x4 = 12 px
    channels[1, 1, 2:4, 2] = 1  # landmark inside the gland at x=2: 2 px
    channels[1, 0:2, 0:2, 4] = 1  # landmark at x=4: 4 px
    tilted = (1, 0, 0, 0, -1, 0, 0, 0, -1)
    write(root / "train/us_images/case000000.nii.gz", image, spacing=(0.8, 0.8, 0.8), direction=tilted)
    write(root / "train/us_labels/case000000.nii.gz", channels, spacing=(0.8, 0.8, 0.8, 1.0))  # 4-D: (c, z, y, x)
    write(root / "val/us_images/case000001.nii.gz", image)
    write(root / "val/us_labels/case000001.nii.gz", np.moveaxis(channels, 0, -1), vector=True)  # (z, y, x, c)
    write(root / "train/mr_images/case000000.nii.gz", image)  # MR is not used
    write(root / "train/us_images/case000002.nii.gz", image)
    write(root / "train/us_labels/case000002.nii.gz", channels[:, :4])  # 4 slices of z for 5: skipped

    report = run_converter("regpro", tmp_path / "raw", tmp_path / "out", progress=False)
    coco, images, found = read_coco(report)
    for source, split in (("train/us_images/case000000.nii.gz", "train"), ("val/us_images/case000001.nii.gz", "val")):
        assert sorted(k for k in images if k.startswith(source)) == [f"{source}#slice=2", f"{source}#slice=4"]
        x2 = found[f"{source}#slice=2"]
        assert areas(x2) == [("unknown1", 2), ("unknown1", 12)]
        # (z, y) plane, both axes flipped: rows z 0-2 -> 2-4, cols y 1-4 -> 1-4 of a 5x6 slice
        assert [bbox for _, area, bbox in x2 if area == 12] == [[1.0, 2.0, 4.0, 3.0]]
        assert areas(found[f"{source}#slice=4"]) == [("unknown1", 4)]
        entry = images[f"{source}#slice=2"]
        assert (entry["height"], entry["width"], entry["split"]) == (5, 6, split)
        assert np.array_equal(pixels(report, entry), image[:, :, 2][::-1, ::-1])
    assert images["train/us_images/case000000.nii.gz#slice=4"]["patient_id"] == "case000000"
    assert set(skipped(report)) == {"train/us_images/case000002.nii.gz"}

    gland = run_converter("regpro", tmp_path / "raw", tmp_path / "gland", progress=False, channels=(0,))
    _, gland_images, gland_found = read_coco(gland)
    assert sorted(gland_images) == [
        "train/us_images/case000000.nii.gz#slice=2",
        "val/us_images/case000001.nii.gz#slice=2",
    ]
    assert all(areas(v) == [("unknown1", 12)] for v in gland_found.values())


# ---------------------------------------------------------------- Segthy


def test_segthy_three_structures_volunteer_ids_and_unmapped_values(tmp_path):
    root = tmp_path / "raw" / "US_data" / "US_volunteer_dataset" / "ground_truth_data"
    shape = (3, 18, 22)
    image = noise(shape, 0, 3000, dtype=np.uint16)
    label = box(
        shape,
        ((1, 1, 4, 1, 5), 1),
        ((1, 10, 12, 15, 20), 1),  # thyroid lobes 12 + 10 px
        ((1, 6, 9, 8, 11), 2),
        ((1, 14, 16, 1, 3), 3),  # carotid 9 px, jugular 4 px
        ((2, 0, 1, 0, 1), 4),  # a value nobody maps: a slice with no structure
    )
    write(root / "US/001_P1_1_left_US.nii", image, spacing=(0.2, 0.3, 0.5), direction=(0, 1, 0, 1, 0, 0, 0, 0, 1))
    write(root / "US_thyroid_label/001_P1_1_left.nii", label)
    write(root / "US/002_P2_1_right_US.nii", image)
    write(root / "US_thyroid_label/002_P2_1_right.nii", label[:, :17])  # other size: skipped

    report = run_converter("segthy", tmp_path / "raw", tmp_path / "out", progress=False)
    coco, images, found = read_coco(report)
    source = "US/001_P1_1_left_US.nii#slice=1"
    assert list(images) == [source]
    assert areas(found[source]) == [("carotid", 9), ("jugular", 4), ("thyroid", 10), ("thyroid", 12)]
    assert [bbox for name, _, bbox in found[source] if name == "jugular"] == [[19.0, 2.0, 2.0, 2.0]]
    assert (images[source]["patient_id"], images[source]["case_id"]) == ("P1", "001_P1_1_left")
    written = pixels(report, images[source])
    low, high = int(image.min()), int(image.max())
    expected = np.round((image[1].astype(float) - low) * 255 / (high - low)).astype(np.uint8)[::-1, ::-1]
    assert np.array_equal(written, expected)
    assert set(skipped(report)) == {"US/002_P2_1_right_US.nii"}
    assert any("001_P1_1_left_US.nii" in note and "[4]" in note for note in report.notes)
    assert "slice=0,2" in " ".join(excluded(report))
