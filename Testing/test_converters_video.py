"""Video, HDF5 and frame-sequence converters: brachial plexus, EchoNet-Dynamic, EchoNet-Pediatric,
Thyroid US Cineclip, Ultrasound Nerve Segmentation, and the raw MMOTU-2D (OTU_2d) release.

Each test writes a tiny raw folder in the dataset's published layout: videos with
``cv2.VideoWriter`` (MJPG .avi for EchoNet, mp4v .mp4 for brachial plexus) whose frame ``i`` is
filled with grey value ``10 + 20 i`` (so the frame a COCO image came from can be read back from
its pixels), the published CSV columns, HDF5 datasets, TIF/JPG/PNG masks with rectangles of known
pixel counts. The COCO written is checked against what was drawn: images, instances per
category, each instance's area, ids, labels, splits, and the report's skipped/excluded entries.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from PIL import Image

from ultrasam_training.data.coco import resolve_image_path
from ultrasam_training.data.convert import run_converter
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.masks import decode_rle
from ultrasam_training.data.validate import validate

H, W = 40, 48


# ---------------------------------------------------------------- builders and readers


def frame_value(index: int) -> int:
    return 10 + 20 * index


def write_video(path: Path, frames: int, fourcc: str, shape: tuple[int, int] = (H, W)) -> Path:
    """A video whose frame ``i`` is uniformly ``frame_value(i)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, (shape[1], shape[0]))
    assert writer.isOpened()
    for index in range(frames):
        writer.write(np.full((*shape, 3), frame_value(index), np.uint8))
    writer.release()
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def rects(shape, *boxes, value=255, dtype=np.uint8) -> np.ndarray:
    """Array with ``value`` in each ``(y0, y1, x0, x1)`` box (or ``((y0, y1, x0, x1), value)``)."""
    array = np.zeros(shape, dtype)
    for box in boxes:
        (y0, y1, x0, x1), fill = (box, value) if isinstance(box[0], int) else box
        array[y0:y1, x0:x1] = fill
    return array


def save(array: np.ndarray, path: Path, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)
    return path


def read_coco(report) -> tuple[dict, dict[str, dict], dict[str, list[tuple[str, int]]]]:
    """(coco, images by source_path, sorted (category, area) per source_path); checks each area and validity."""
    assert validate(report.coco_path, check_files=True) == []
    coco = json.loads(Path(report.coco_path).read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    images = {image["source_path"]: image for image in coco["images"]}
    by_id = {image["id"]: image["source_path"] for image in coco["images"]}
    instances = defaultdict(list)
    for annotation in coco["annotations"]:
        area = int(decode_rle(annotation["segmentation"]).sum())
        assert annotation["area"] == area
        instances[by_id[annotation["image_id"]]].append((names[annotation["category_id"]], area))
    return coco, images, {key: sorted(value) for key, value in instances.items()}


def pixel_value(report, image: dict) -> float:
    """Mean grey value of a written image (identifies the video frame it came from)."""
    return float(np.asarray(Image.open(resolve_image_path(report.coco_path, image["file_name"]))).mean())


def skipped(report) -> dict[str, str]:
    return {problem.path: problem.reason for problem in report.skipped}


def excluded(report) -> dict[str, str]:
    return {problem.path: problem.reason for problem in report.excluded}


# ---------------------------------------------------------------- EchoNet-Dynamic


def chords(long_axis, x_left, x_right, ys):
    """VolumeTracings rows of one frame: the long axis, then one chord per ``y`` from side A to side B."""
    return [list(long_axis)] + [[x_left, y, x_right, y] for y in ys]


def build_echonet_dynamic(raw: Path) -> Path:
    root = raw / "EchoNet-Dynamic"
    write_video(root / "Videos" / "0XA1.avi", 6, "MJPG")
    write_video(root / "Videos" / "0XB2.avi", 5, "MJPG")
    rows = []
    # 0XA1 frame 1: chords at y=10 and y=20 from x=10 to x=20 -> rectangle 11 x 11 = 121 px (boundary filled);
    # the long axis (15, 5)-(15, 35) must not be part of the outline, or the area would grow.
    rows += [["0XA1.avi", *c, 1] for c in chords((15, 5, 15, 35), 10, 20, (10, 15, 20))]
    # 0XA1 frame 4: x 5..14, y 20..29 -> 10 x 10 = 100 px
    rows += [["0XA1.avi", *c, 4] for c in chords((9, 18, 9, 31), 5, 14, (20, 29))]
    # 0XB2 frame 2: x 30..39, y 2..21 -> 10 x 20 = 200 px; frame 7 lies beyond its 5 frames
    rows += [["0XB2.avi", *c, 2] for c in chords((35, 0, 35, 25), 30, 39, (2, 12, 21))]
    rows += [["0XB2.avi", *c, 7] for c in chords((35, 0, 35, 25), 30, 39, (2, 21))]
    # 0XC3 is traced but its video is missing; 0XE5.avi is no video at all
    rows += [["0XC3.avi", *c, 0] for c in chords((15, 5, 15, 35), 10, 20, (10, 20))]
    rows += [["0XE5.avi", *c, 0] for c in chords((15, 5, 15, 35), 10, 20, (10, 20))]
    (root / "Videos" / "0XE5.avi").write_bytes(b"RIFF but truncated")
    write_csv(root / "VolumeTracings.csv", ["FileName", "X1", "Y1", "X2", "Y2", "Frame"], rows)
    header = ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"]
    write_csv(
        root / "FileList.csv",
        header,
        [
            ["0XA1", 60.1, 20.0, 50.0, H, W, 50, 6, "TRAIN"],
            ["0XB2", 45.3, 30.0, 55.0, H, W, 50, 5, "TEST"],
            ["0XC3", 55.0, 25.0, 55.0, H, W, 50, 1, "VAL"],
            ["0XD4", 52.0, 25.0, 52.0, H, W, 50, 9, "VAL"],
        ],
    )
    return raw


def test_echonet_dynamic_traced_frames_become_images(tmp_path):
    report = run_converter("echonet_dynamic", build_echonet_dynamic(tmp_path / "raw"), tmp_path / "out", progress=False)
    coco, images, found = read_coco(report)
    assert set(images) == {"Videos/0XA1.avi#frame=1", "Videos/0XA1.avi#frame=4", "Videos/0XB2.avi#frame=2"}
    assert found == {
        "Videos/0XA1.avi#frame=1": [("left_ventricle", 121)],
        "Videos/0XA1.avi#frame=4": [("left_ventricle", 100)],
        "Videos/0XB2.avi#frame=2": [("left_ventricle", 200)],
    }
    for source, frame, patient, split in [
        ("Videos/0XA1.avi#frame=1", 1, "0XA1", "train"),
        ("Videos/0XA1.avi#frame=4", 4, "0XA1", "train"),
        ("Videos/0XB2.avi#frame=2", 2, "0XB2", "test"),
    ]:
        image = images[source]
        assert (image["frame"], image["patient_id"], image["split"]) == (frame, patient, split)
        assert (image["height"], image["width"]) == (H, W)
        assert abs(pixel_value(report, image) - frame_value(frame)) < 5
    assert [c["name"] for c in coco["categories"]] == ["left_ventricle"]
    problems = skipped(report)
    assert set(problems) == {"Videos/0XC3.avi", "Videos/0XB2.avi#frame=7", "Videos/0XE5.avi#frame=0"}
    assert "not found" in problems["Videos/0XC3.avi"] and "5 frames" in problems["Videos/0XB2.avi#frame=7"]
    assert "0XE5.avi" in problems["Videos/0XE5.avi#frame=0"]  # cannot be decoded
    assert any("1 video(s) without any tracing" in note for note in report.notes)


def test_echonet_dynamic_outline_is_the_filled_chord_ends(tmp_path):
    """A trapezoid (narrower chords lower down) has the area of its filled outline, not of a bow-tie."""
    root = tmp_path / "EchoNet-Dynamic"
    write_video(root / "Videos" / "V.avi", 2, "MJPG")
    # chords: y=10 from x=10..30, y=30 from x=20..30 -> outline (10,10),(20,30),(30,30),(30,10)
    rows = [["V.avi", *c, 0] for c in [[20, 5, 20, 35], [10, 10, 30, 10], [20, 30, 30, 30]]]
    write_csv(root / "VolumeTracings.csv", ["FileName", "X1", "Y1", "X2", "Y2", "Frame"], rows)
    report = run_converter("echonet_dynamic", root, tmp_path / "out", progress=False)
    _, images, found = read_coco(report)
    expected = np.zeros((H, W), np.uint8)
    cv2.fillPoly(expected, [np.array([[10, 10], [20, 30], [30, 30], [30, 10]], np.int32)], 1)
    assert found == {"Videos/V.avi#frame=0": [("left_ventricle", int(expected.sum()))]}
    assert "split" not in images["Videos/V.avi#frame=0"]
    assert any("FileList.csv not found" in note for note in report.notes)


# ---------------------------------------------------------------- EchoNet-Pediatric


def outline(x0, x1, y0, y1):
    return [(x0, y0), (x0, y1), (x1, y1), (x1, y0)]


def build_echonet_pediatric(raw: Path) -> Path:
    root = raw / "pediatric_echo_avi" / "pediatric_echo_avi"
    a4c, psax = root / "A4C", root / "PSAX"
    write_video(a4c / "Videos" / "CR1-P1.avi", 6, "MJPG")
    write_video(a4c / "Videos" / "CR2-P2.avi", 3, "MJPG")
    write_video(psax / "Videos" / "CR3-Q1.avi", 4, "MJPG")
    a4c_rows = [["CR1-P1.avi", x, y, 3] for x, y in outline(5, 14, 5, 14)]  # 10 x 10 = 100 px
    a4c_rows += [["CR1-P1.avi", x, y, 6] for x, y in outline(20, 29, 10, 29)]  # 10 x 20 = 200 px
    a4c_rows += [["CR2-P2.avi", x, y, 0] for x, y in outline(5, 14, 5, 14)]  # Frame 0 -> index -1
    a4c_rows += [["CR2-P2.avi", "", "", "No Systolic"]]
    write_csv(a4c / "VolumeTracings.csv", ["FileName", "X", "Y", "Frame"], a4c_rows)
    psax_rows = [["CR3-Q1.avi", x, y, 2] for x, y in outline(2, 7, 30, 37)]  # 6 x 8 = 48 px
    write_csv(psax / "VolumeTracings.csv", ["FileName", "X", "Y", "Frame"], psax_rows)
    header = ["FileName", "EF", "Sex", "Age", "Weight", "Height", "Split"]
    write_csv(
        a4c / "FileList.csv", header, [["CR1-P1.avi", 61, "F", 4, 16, 100, 3], ["CR2-P2.avi", 58, "M", 9, 30, 130, 0]]
    )
    write_csv(psax / "FileList.csv", header, [["CR3-Q1.avi", 64, "F", 12, 40, 150, 8]])
    return raw


def test_echonet_pediatric_views_folds_and_frame_offset(tmp_path):
    report = run_converter(
        "echonet_pediatric", build_echonet_pediatric(tmp_path / "raw"), tmp_path / "out", progress=False
    )
    _, images, found = read_coco(report)
    # released converter: video frame = CSV Frame - 1
    assert found == {
        "A4C/Videos/CR1-P1.avi#frame=2": [("left_ventricle", 100)],
        "A4C/Videos/CR1-P1.avi#frame=5": [("left_ventricle", 200)],
        "PSAX/Videos/CR3-Q1.avi#frame=1": [("left_ventricle", 48)],
    }
    for source, frame, view, fold, patient in [
        ("A4C/Videos/CR1-P1.avi#frame=2", 2, "A4C", 3, "CR1-P1"),
        ("A4C/Videos/CR1-P1.avi#frame=5", 5, "A4C", 3, "CR1-P1"),
        ("PSAX/Videos/CR3-Q1.avi#frame=1", 1, "PSAX", 8, "CR3-Q1"),
    ]:
        image = images[source]
        assert (image["frame"], image["view"], image["fold"], image["patient_id"]) == (frame, view, fold, patient)
        assert image["case_id"] == f"{patient}_{view}" and "split" not in image
        assert abs(pixel_value(report, image) - frame_value(frame)) < 5
    assert list(skipped(report)) == ["A4C/Videos/CR2-P2.avi#frame=-1"]
    assert any("No Systolic" in note for note in report.notes)


def test_echonet_pediatric_frame_offset_zero_uses_the_csv_frame(tmp_path):
    raw = build_echonet_pediatric(tmp_path / "raw")
    report = run_converter("echonet_pediatric", raw, tmp_path / "out", progress=False, frame_offset=0)
    _, images, found = read_coco(report)
    assert set(found) == {
        "A4C/Videos/CR1-P1.avi#frame=3",
        "PSAX/Videos/CR3-Q1.avi#frame=2",
        "A4C/Videos/CR2-P2.avi#frame=0",
    }
    assert abs(pixel_value(report, images["A4C/Videos/CR1-P1.avi#frame=3"]) - frame_value(3)) < 5
    assert "6 frames" in skipped(report)["A4C/Videos/CR1-P1.avi#frame=6"]


# ---------------------------------------------------------------- Thyroid US Cineclip


def build_thyroid(raw: Path, *, with_mask: bool = True) -> Path:
    root = raw / "thyroidultrasoundcineclip"
    root.mkdir(parents=True)
    shape = (4, 32, 40)
    image = np.random.default_rng(0).integers(20, 220, shape).astype(np.uint8)
    mask = np.zeros(shape, np.uint8)
    mask[0, 5:15, 5:15] = 255  # a 10 x 10 ring: its 4 x 4 hole is filled -> 100 px
    mask[0, 8:12, 8:12] = 0
    mask[1] = rects((32, 40), (2, 7, 2, 7), (20, 23, 30, 34))  # two components: 25 + 12 px
    mask[3, 10:16, 20:26] = 255  # 36 px; frame 2 stays empty
    with h5py.File(root / "dataset.hdf5", "w") as handle:
        handle["image"] = image
        if with_mask:
            handle["mask"] = mask
        handle["annot_id"] = np.array([b"12_", b"12_", b"12_", b"7_"])
        handle["frame_num"] = np.array([0, 1, 2, 0])
    write_csv(
        root / "metadata.csv",
        ["annot_id", "age", "sex", "ti-rads_level", "histopath_diagnosis"],
        [["12_", 50, "F", 4, "Benign"], ["7_", 61, "M", 2, "Benign"]],
    )
    return raw


def test_thyroid_cineclip_frames_patients_and_filled_holes(tmp_path):
    report = run_converter("thyroid_cineclip", build_thyroid(tmp_path / "raw"), tmp_path / "out", progress=False)
    _, images, found = read_coco(report)
    assert found == {
        "dataset.hdf5#index=0": [("thyroid", 100)],
        "dataset.hdf5#index=1": [("thyroid", 12), ("thyroid", 25)],
        "dataset.hdf5#index=3": [("thyroid", 36)],
    }
    summary = {s: (i["patient_id"], i["case_id"], i["frame"], i["class_labels"]) for s, i in images.items()}
    assert summary == {
        "dataset.hdf5#index=0": ("12", "12_", 0, ["TR4"]),
        "dataset.hdf5#index=1": ("12", "12_", 1, ["TR4"]),
        "dataset.hdf5#index=3": ("7", "7_", 0, ["TR2"]),
    }
    assert list(excluded(report)) == ["dataset.hdf5#index=2"]
    assert report.skipped == []


def test_thyroid_cineclip_keep_empty_and_missing_mask_dataset(tmp_path):
    report = run_converter(
        "thyroid_cineclip", build_thyroid(tmp_path / "raw"), tmp_path / "out", progress=False, keep_empty=True
    )
    assert report.images == 4 and report.empty == ["dataset.hdf5#index=2"]
    with pytest.raises(DatasetError, match="mask"):
        run_converter(
            "thyroid_cineclip", build_thyroid(tmp_path / "raw2", with_mask=False), tmp_path / "out2", progress=False
        )


# ---------------------------------------------------------------- Ultrasound Nerve Segmentation (Kaggle)


def build_nerve(raw: Path) -> Path:
    train = raw / "ultrasound-nerve-segmentation" / "train"
    pixels = np.random.default_rng(1).integers(20, 220, (H, W)).astype(np.uint8)
    for stem in ("1_1", "1_2", "2_1", "2_2", "10_1"):
        save(pixels, train / f"{stem}.tif")
    # 8 x 6 = 48 and 5 x 5 = 25 px at 255; a 4 x 4 patch at 120 lies below the 150 threshold
    save(rects((H, W), (2, 10, 2, 8), (20, 25, 30, 35), ((30, 34, 5, 9), 120)), train / "1_1_mask.tif")
    save(np.zeros((H, W), np.uint8), train / "1_2_mask.tif")  # empty: excluded
    save(rects((H + 2, W), (2, 10, 2, 8)), train / "2_1_mask.tif")  # size mismatch: skipped
    save(rects((H, W), (0, 3, 0, 7)), train / "10_1_mask.tif")  # 21 px
    save(rects((H, W), (0, 3, 0, 7)), train / "3_1_mask.tif")  # mask without image; 2_2 has no mask
    save(pixels, raw / "ultrasound-nerve-segmentation" / "test" / "1.tif")
    return raw


def test_ultrasound_nerve_segmentation_pairs_subjects_and_bad_pairs(tmp_path):
    report = run_converter(
        "ultrasound_nerve_segmentation", build_nerve(tmp_path / "raw"), tmp_path / "out", progress=False
    )
    coco, images, found = read_coco(report)
    assert found == {
        "train/1_1.tif": [("cervical_nerves", 25), ("cervical_nerves", 48)],
        "train/10_1.tif": [("cervical_nerves", 21)],
    }
    assert [i["source_path"] for i in coco["images"]] == ["train/1_1.tif", "train/10_1.tif"]  # natural order
    assert {s: i["patient_id"] for s, i in images.items()} == {"train/1_1.tif": "1", "train/10_1.tif": "10"}
    problems = skipped(report)
    assert set(problems) == {"train/2_1.tif", "train/2_2.tif", "train/3_1_mask.tif"}
    assert "differs" in problems["train/2_1.tif"] and "no mask" in problems["train/2_2.tif"]
    assert list(excluded(report)) == ["train/1_2.tif"]
    kept = run_converter(
        "ultrasound_nerve_segmentation", tmp_path / "raw", tmp_path / "out2", progress=False, keep_empty=True
    )
    assert kept.images == 3 and kept.empty == ["train/1_2.tif"]


# ---------------------------------------------------------------- brachial plexus (Regional-US)


def build_brachial(raw: Path) -> Path:
    data = raw / "brachial_plexus" / "data"
    write_video(data / "Sonosite" / "videos" / "s071.mp4", 5, "mp4v")
    write_video(data / "Butterfly" / "videos" / "b240.mp4", 3, "mp4v")
    write_video(data / "Butterfly" / "videos" / "b999.mp4", 2, "mp4v")  # no masks at all
    ac = data / "Sonosite" / "ac_masks" / "s071"
    for index in range(5):
        boxes = [(8, 16, 8, 24)]  # 8 x 16 = 128 px, 8-aligned so JPEG keeps the edges
        if index == 2:
            boxes.append((24, 40, 32, 48))  # a second component: 16 x 16 = 256 px
        if index == 3:
            boxes = []  # an empty mask: excluded
        save(rects((H, W), *boxes, ((32, 40, 0, 8), 40)), ac / f"s071_{index:03d}.jpg", quality=95)  # 40 < threshold
    needle = data / "Sonosite" / "needle" / "needle_masks" / "s071"
    save(rects((H, W), (0, 8, 24, 48)), needle / "s071_002.jpg", quality=95)  # 8 x 24 = 192 px, frame 2 only
    save(rects((H, W), (0, 8, 24, 48)), needle / "s071_009.jpg", quality=95)  # beyond the 5 frames
    for index in range(2):  # b240 frame 2 has no mask file
        save(rects((H, W), (16, 24, 16, 32)), data / "Butterfly" / "ac_masks" / "b240" / f"b240_{index:03d}.jpg")
    return raw


def test_brachial_plexus_pairs_masks_by_frame_number(tmp_path):
    report = run_converter("brachial_plexus", build_brachial(tmp_path / "raw"), tmp_path / "out", progress=False)
    _, images, found = read_coco(report)
    s071, b240 = "Sonosite/videos/s071.mp4", "Butterfly/videos/b240.mp4"
    assert found == {
        f"{s071}#frame=0": [("nerve_plexus", 128)],
        f"{s071}#frame=1": [("nerve_plexus", 128)],
        f"{s071}#frame=2": [("needle", 192), ("nerve_plexus", 128), ("nerve_plexus", 256)],
        f"{s071}#frame=4": [("nerve_plexus", 128)],
        f"{b240}#frame=0": [("nerve_plexus", 128)],
        f"{b240}#frame=1": [("nerve_plexus", 128)],
    }
    for source, image in images.items():
        video, frame = source.split("#frame=")
        assert image["frame"] == int(frame) and image["patient_id"] == Path(video).stem == image["case_id"]
        assert abs(pixel_value(report, image) - frame_value(int(frame))) < 6
    assert excluded(report) == {
        f"{b240}#frame=2": "frames without a mask file",
        f"{s071}#frame=3": "no annotated structure (keep_empty=True keeps such images)",
    }
    problems = skipped(report)
    assert set(problems) == {"Butterfly/videos/b999.mp4", f"{s071}#frame=9"}
    assert "needle" in problems[f"{s071}#frame=9"]


# ---------------------------------------------------------------- MMOTU-2D raw release (OTU_2d)


def build_mmotu(raw: Path) -> Path:
    root = raw / "OTU_2d"
    pixels = np.random.default_rng(2).integers(20, 220, (H, W, 3)).astype(np.uint8)
    for stem in ("1", "2", "3", "4"):
        save(pixels, root / "images" / f"{stem}.JPG", format="JPEG", quality=95)
    ann = root / "annotations"
    save(rects((H, W), (2, 7, 2, 8), (20, 24, 30, 35)), ann / "1_binary.PNG", format="PNG")  # 30 + 20 px
    colour = np.zeros((H, W, 3), np.uint8)
    colour[2:7, 2:8] = (255, 0, 0)
    colour[30:40, 0:10] = (0, 0, 255)  # only in the colour mask: the binary mask wins
    save(colour, ann / "1.PNG", format="PNG")
    colour = np.zeros((H, W, 3), np.uint8)
    colour[10:16, 10:17] = (128, 0, 64)  # 6 x 7 = 42 px, no binary mask for image 2
    save(colour, ann / "2.PNG", format="PNG")
    save(rects((H + 4, W), (2, 7, 2, 8)), ann / "3_binary.PNG", format="PNG")  # size mismatch
    (root / "train_cls.txt").write_text("1.JPG 2\n3.JPG 0\n")
    (root / "val_cls.txt").write_text("2.JPG 7\n")  # 4.JPG is listed nowhere
    return raw


def test_mmotu_raw_release_classes_splits_and_bad_pairs(tmp_path):
    report = run_converter("mmotu_2d", build_mmotu(tmp_path / "raw"), tmp_path / "out", progress=False)
    coco, images, found = read_coco(report)
    assert [c["name"] for c in coco["categories"]] == [
        "chocolate_cyst",
        "serous_cystadenoma",
        "teratoma",
        "thera_cell_tumor",
        "simple_cyst",
        "normal_ovary",
        "mucinous_cystadenoma",
        "high_grade_serous",
    ]
    assert found == {"images/1.JPG": [("teratoma", 20), ("teratoma", 30)], "images/2.JPG": [("high_grade_serous", 42)]}
    assert {s: (i["split"], i["class_labels"]) for s, i in images.items()} == {
        "images/1.JPG": ("train", ["teratoma"]),
        "images/2.JPG": ("test", ["high_grade_serous"]),
    }
    problems = skipped(report)
    assert set(problems) == {"images/3.JPG", "images/4.JPG"}
    assert "differs" in problems["images/3.JPG"] and "cls" in problems["images/4.JPG"]


# ---------------------------------------------------------------- layouts not recognised


@pytest.mark.parametrize(
    "key",
    [
        "brachial_plexus",
        "echonet_dynamic",
        "echonet_pediatric",
        "thyroid_cineclip",
        "ultrasound_nerve_segmentation",
        "mmotu_2d",
    ],
)
def test_unrecognised_layout_raises(tmp_path, key):
    raw = tmp_path / "raw"
    save(np.zeros((8, 8), np.uint8), raw / "something" / "a.png")
    with pytest.raises(DatasetError):
        run_converter(key, raw, tmp_path / "out", progress=False)


@pytest.mark.parametrize(
    "key",
    [
        "brachial_plexus",
        "echonet_dynamic",
        "echonet_pediatric",
        "thyroid_cineclip",
        "ultrasound_nerve_segmentation",
    ],
)
def test_categories_follow_the_catalogue(key):
    from ultrasam_training.data import registry
    from ultrasam_training.data.convert import converter_module

    assert tuple(converter_module(key).CATEGORIES) == tuple(registry.get(key).classes)
