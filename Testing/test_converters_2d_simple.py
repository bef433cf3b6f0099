"""Converters of the simple 2-D image + mask datasets: 105US, BUID, BUS (Dataset B), CCAUI, DDTI,
STU-Hospital, TG3K, TN3K, TNSCUI.

Each test builds a tiny raw folder in the dataset's published layout (folder and file names,
formats) with rectangles of known pixel counts drawn into the masks, runs the converter through
``run_converter`` and checks the COCO file against what was drawn: images, one instance per
rectangle, exact instance masks, ids, labels, splits, and the report's skipped/excluded/notes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from ultrasam_training.data.convert import run_converter
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.validate import validate

pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # the truncated TIF mask
H, W = 48, 64
#: two separate rectangles (rows y0:y1, cols x0:x1) and a third one, 8-aligned so JPEG keeps them
RECT_A = (8, 16, 8, 24)  # 8 x 16 = 128 px
RECT_B = (24, 40, 40, 56)  # 16 x 16 = 256 px
RECT_C = (32, 40, 8, 32)  # 8 x 24 = 192 px


def _area(rect: tuple[int, int, int, int]) -> int:
    y0, y1, x0, x1 = rect
    return (y1 - y0) * (x1 - x0)


def _rect_mask(rect: tuple[int, int, int, int], shape: tuple[int, int] = (H, W)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    y0, y1, x0, x1 = rect
    mask[y0:y1, x0:x1] = True
    return mask


def _save(array: np.ndarray, path: Path, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF"}[path.suffix.lower()]
    if fmt == "JPEG":
        options.setdefault("quality", 95)
    Image.fromarray(array).save(path, format=fmt, **options)
    return path


def image(path: Path, shape: tuple[int, int] = (H, W), rgb: bool = False) -> Path:
    """A grey gradient ultrasound stand-in (RGB with equal channels when ``rgb``)."""
    pixels = (np.add.outer(np.arange(shape[0]) * 3, np.arange(shape[1]) * 2) % 200 + 20).astype(np.uint8)
    return _save(np.repeat(pixels[..., None], 3, axis=2) if rgb else pixels, path)


def mask(
    path: Path, rects=(), value: int = 255, shape: tuple[int, int] = (H, W), extra=None, rgb: bool = False
) -> Path:
    """A mask with ``value`` in each rectangle; ``extra`` = (rect, other value) drawn too."""
    pixels = np.zeros(shape, np.uint8)
    for y0, y1, x0, x1 in rects:
        pixels[y0:y1, x0:x1] = value
    if extra is not None:
        (y0, y1, x0, x1), other = extra
        pixels[y0:y1, x0:x1] = other
    return _save(np.repeat(pixels[..., None], 3, axis=2) if rgb else pixels, path)


def convert(key: str, raw: Path, out: Path, **options):
    report = run_converter(key, raw, out, progress=False, **options)
    assert validate(report.coco_path, check_files=True) == []
    with open(report.coco_path) as handle:
        return report, json.load(handle)


def by_source(coco: dict) -> dict[str, dict]:
    """``{source_path: image entry + "instances": [(category name, bool mask), ...]}``."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    images = {im["id"]: {**im, "instances": []} for im in coco["images"]}
    for annotation in coco["annotations"]:
        entry = images[annotation["image_id"]]
        rle = dict(annotation["segmentation"])
        decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
        assert annotation["area"] == int(decoded.sum())
        entry["instances"].append((names[annotation["category_id"]], decoded))
    return {entry["source_path"]: entry for entry in images.values()}


def assert_instances(entry: dict, category: str, rects, shape: tuple[int, int] = (H, W)) -> None:
    """The image's instances are exactly one per rectangle, all of ``category``."""
    got = sorted((name, int(m.sum()), m.tobytes()) for name, m in entry["instances"])
    want = sorted((category, _area(r), _rect_mask(r, shape).tobytes()) for r in rects)
    assert [g[:2] for g in got] == [w[:2] for w in want]
    assert [g[2] for g in got] == [w[2] for w in want]


def skipped(report) -> dict[str, str]:
    return {p.path: p.reason for p in report.skipped}


# --------------------------------------------------------------------------------------- 105US


def test_105us_pairs_folders_and_keeps_only_255(tmp_path):
    root = tmp_path / "raw" / "105US"
    image(root / "images" / "img_1.png")
    mask(root / "masks" / "mask_1.png", [RECT_A, RECT_B])
    image(root / "images" / "img_2.png")
    mask(root / "masks" / "mask_2.png", [RECT_C], extra=(RECT_A, 128))  # 128: not a tumour under mask // 255
    image(root / "images" / "img_3.png")  # no mask
    image(root / "images" / "img_4.png")
    mask(root / "masks" / "mask_4.png", [])  # empty
    mask(root / "masks" / "mask_9.png", [RECT_A])  # no image
    report, coco = convert("105us", tmp_path / "raw", tmp_path / "out")
    images = by_source(coco)
    assert sorted(images) == ["images/img_1.png", "images/img_2.png"]
    assert_instances(images["images/img_1.png"], "tumor", [RECT_A, RECT_B])
    assert_instances(images["images/img_2.png"], "tumor", [RECT_C])
    assert [c["name"] for c in coco["categories"]] == ["tumor"]
    assert set(skipped(report)) == {"images/img_3.png", "masks/mask_9.png"}
    assert [p.path for p in report.excluded] == ["images/img_4.png"]
    assert any("images/img_2.png" in note and "128" in note for note in report.notes)


def test_105us_named_folders_and_unknown_layout(tmp_path):
    image(tmp_path / "raw" / "a" / "7.png")
    mask(tmp_path / "raw" / "b" / "7.png", [RECT_B])
    with pytest.raises(DatasetError, match="mask folder"):
        run_converter("105us", tmp_path / "raw", tmp_path / "out", progress=False)
    report, coco = convert("105us", tmp_path / "raw", tmp_path / "out", image_dir="a", mask_dir="b")
    assert_instances(by_source(coco)["a/7.png"], "tumor", [RECT_B])


# ---------------------------------------------------------------------------------------- BUID


def test_buid_bmp_tif_pairs_keep_class_folder(tmp_path):
    raw = tmp_path / "BUID"
    image(raw / "Benign" / "1 Benign Image.bmp")
    mask(raw / "Benign" / "1 Benign Mask.tif", [RECT_A, RECT_B])
    image(raw / "Malignant" / "1 Malignant Image.bmp", rgb=True)
    mask(raw / "Malignant" / "1 Malignant Mask.tif", [RECT_C], value=200)  # >= 150 counts
    image(raw / "Malignant" / "2 Malignant Image.bmp")
    path = mask(raw / "Malignant" / "2 Malignant Mask.tif", [RECT_A])
    path.write_bytes(path.read_bytes()[:60])  # truncated
    report, coco = convert("buid", tmp_path, tmp_path / "out")
    images = by_source(coco)
    assert sorted(images) == ["Benign/1 Benign Image.bmp", "Malignant/1 Malignant Image.bmp"]
    assert_instances(images["Benign/1 Benign Image.bmp"], "breast_nodule", [RECT_A, RECT_B])
    assert_instances(images["Malignant/1 Malignant Image.bmp"], "breast_nodule", [RECT_C])
    assert images["Benign/1 Benign Image.bmp"]["class_labels"] == ["benign"]
    assert images["Malignant/1 Malignant Image.bmp"]["class_labels"] == ["malignant"]
    assert list(skipped(report)) == ["Malignant/2 Malignant Image.bmp"]


def test_buid_threshold_150(tmp_path):
    raw = tmp_path / "raw"
    image(raw / "Benign" / "3 Benign Image.bmp")
    mask(raw / "Benign" / "3 Benign Mask.tif", [RECT_A], value=150, extra=(RECT_B, 149))
    report, coco = convert("buid", raw, tmp_path / "out")
    assert_instances(by_source(coco)["Benign/3 Benign Image.bmp"], "breast_nodule", [RECT_A])


# ------------------------------------------------------------------------------ BUS (Dataset B)


def test_bus_b_original_gt_folders(tmp_path):
    raw = tmp_path / "Dataset_B"
    (raw / "DatasetB.xlsx").parent.mkdir(parents=True)
    (raw / "DatasetB.xlsx").write_bytes(b"PK\x03\x04 not read")
    image(raw / "original" / "000001.png")
    mask(raw / "GT" / "000001.png", [RECT_A, RECT_C])
    image(raw / "original" / "000002.png")
    mask(raw / "GT" / "000002.png", [RECT_B], shape=(H, W + 8))  # size mismatch
    image(raw / "original" / "000003.png")
    mask(raw / "GT" / "000003.png", [RECT_B], value=160)
    report, coco = convert("bus_b", tmp_path, tmp_path / "out")
    images = by_source(coco)
    assert sorted(images) == ["original/000001.png", "original/000003.png"]
    assert_instances(images["original/000001.png"], "breast_nodule", [RECT_A, RECT_C])
    assert_instances(images["original/000003.png"], "breast_nodule", [RECT_B])
    assert "differs" in skipped(report)["original/000002.png"]
    assert any("DatasetB.xlsx" in note for note in report.notes)


# --------------------------------------------------------------------------------------- CCAUI


def test_ccaui_recording_ids_and_rgb_masks(tmp_path):
    root = tmp_path / "Common Carotid Artery Ultrasound Images"
    names = [
        "202201121748100022VAS_slice_1069.png",
        "202201121748100022VAS_slice_1070.png",
        "202202071359530063CAR_slice_7.png",
    ]
    for index, name in enumerate(names):
        image(root / "US images" / name, rgb=True)
        mask(root / "Expert mask images" / name, [[RECT_A], [RECT_A, RECT_B], [RECT_C]][index], rgb=index == 1)
    report, coco = convert("ccaui", tmp_path, tmp_path / "out")
    images = by_source(coco)
    assert len(images) == 3
    assert_instances(images[f"US images/{names[1]}"], "carotid_artery", [RECT_A, RECT_B])
    assert_instances(images[f"US images/{names[2]}"], "carotid_artery", [RECT_C])
    assert [images[f"US images/{n}"]["patient_id"] for n in names] == [
        "202201121748100022VAS",
        "202201121748100022VAS",
        "202202071359530063CAR",
    ]
    assert report.skipped == [] and report.notes == []


# ---------------------------------------------------------------------------------------- DDTI


def test_ddti_stage1_from_thyroid_archive(tmp_path):
    stage1 = tmp_path / "Thyroid Dataset" / "DDTI" / "2_preprocessed_data" / "stage1"
    image(stage1 / "p_image" / "1.PNG")
    mask(stage1 / "p_mask" / "1.PNG", [RECT_A, RECT_B])
    image(stage1 / "p_image" / "2.PNG")
    mask(stage1 / "p_mask" / "2.PNG", [RECT_C], extra=(RECT_A, 1))  # value 1 is not 255
    image(stage1 / "p_image" / "3.PNG")
    image(tmp_path / "Thyroid Dataset" / "DDTI" / "1_or_data" / "image" / "0000.PNG")
    report, coco = convert("ddti", tmp_path, tmp_path / "out")
    images = by_source(coco)
    assert sorted(images) == ["2_preprocessed_data/stage1/p_image/1.PNG", "2_preprocessed_data/stage1/p_image/2.PNG"]
    assert_instances(images["2_preprocessed_data/stage1/p_image/1.PNG"], "thyroid_nodule", [RECT_A, RECT_B])
    assert_instances(images["2_preprocessed_data/stage1/p_image/2.PNG"], "thyroid_nodule", [RECT_C])
    assert list(skipped(report)) == ["2_preprocessed_data/stage1/p_image/3.PNG"]
    assert any("p_image/2.PNG" in note for note in report.notes)
    assert all(not im.get("class_labels") for im in coco["images"])


def test_ddti_original_stage_and_bad_options(tmp_path):
    ddti = tmp_path / "DDTI"
    image(ddti / "1_or_data" / "image" / "0000.PNG")
    mask(ddti / "1_or_data" / "mask" / "0000.PNG", [RECT_B])
    with pytest.raises(DatasetError, match="stage1"):
        run_converter("ddti", ddti, tmp_path / "out", progress=False)
    with pytest.raises(DatasetError, match="stage must be"):
        run_converter("ddti", ddti, tmp_path / "out", progress=False, stage="stage9")
    report, coco = convert("ddti", ddti, tmp_path / "out", stage="original")
    assert_instances(by_source(coco)["1_or_data/image/0000.PNG"], "thyroid_nodule", [RECT_B])


# -------------------------------------------------------------------------------- STU-Hospital


def test_stu_hospital_numbers_and_resized_masks(tmp_path):
    hospital = tmp_path / "STU-Hospital" / "Hospital"
    image(hospital / "Test_Image_1.png")
    mask(hospital / "mask_1.png", [RECT_A, RECT_B])
    image(hospital / "Test_Image_2.png")
    mask(hospital / "mask_2.png", [(4, 8, 4, 12)], shape=(H // 2, W // 2))  # half size: resized x2
    image(hospital / "Test_Image_3.png")
    mask(hospital / "mask_30.png", [RECT_A])
    report, coco = convert("stu_hospital", tmp_path / "STU-Hospital", tmp_path / "out")
    images = by_source(coco)
    assert sorted(images) == ["Test_Image_1.png", "Test_Image_2.png"]
    assert_instances(images["Test_Image_1.png"], "benign_tumour", [RECT_A, RECT_B])
    assert_instances(images["Test_Image_2.png"], "benign_tumour", [(8, 16, 8, 24)])
    assert set(skipped(report)) == {"Test_Image_3.png", "mask_30.png"}
    assert any("Test_Image_2.png" in note and "resized" in note for note in report.notes)


# ---------------------------------------------------------------------------------------- TG3K


def test_tg3k_jpg_pairs_and_official_split(tmp_path):
    tg3k = tmp_path / "Thyroid Dataset" / "tg3k"
    for index in range(4):
        image(tg3k / "thyroid-image" / f"{index:04d}.jpg")
        if index != 3:
            mask(tg3k / "thyroid-mask" / f"{index:04d}.jpg", [[RECT_A, RECT_B], [RECT_C], [RECT_B]][index])
    (tg3k / "tg3k-trainval.json").write_text(json.dumps({"train": [0, 2, 3], "val": [1, 7]}))
    report, coco = convert("tg3k", tmp_path / "Thyroid Dataset", tmp_path / "out")
    images = by_source(coco)
    assert sorted(images) == [f"thyroid-image/{i:04d}.jpg" for i in range(3)]
    assert_instances(images["thyroid-image/0000.jpg"], "thyroid_gland", [RECT_A, RECT_B])
    assert_instances(images["thyroid-image/0001.jpg"], "thyroid_gland", [RECT_C])
    assert [images[f"thyroid-image/{i:04d}.jpg"]["split"] for i in range(3)] == ["train", "val", "train"]
    assert list(skipped(report)) == ["thyroid-image/0003.jpg"]
    assert any("index 7" in note for note in report.notes)


# ---------------------------------------------------------------------------------------- TN3K


def test_tn3k_keeps_test_split_and_class_labels(tmp_path):
    tn3k = tmp_path / "tn3k"
    image(tn3k / "trainval-image" / "0000.jpg")
    mask(tn3k / "trainval-mask" / "0000.jpg", [RECT_A, RECT_B])
    image(tn3k / "trainval-image" / "0001.jpg")
    mask(tn3k / "trainval-mask" / "0001.jpg", [RECT_C])
    image(tn3k / "test-image" / "0000.jpg")
    mask(tn3k / "test-mask" / "0000.jpg", [RECT_B])
    mask(tn3k / "test-mask" / "0005.jpg", [RECT_B])  # no image
    (tn3k / "label4trainval.csv").write_text("0000.jpg,1\n0001.jpg,0\n")
    (tn3k / "label4test.csv").write_text("0000.jpg,0\n")
    report, coco = convert("tn3k", tmp_path, tmp_path / "out")
    images = by_source(coco)
    assert sorted(images) == ["test-image/0000.jpg", "trainval-image/0000.jpg", "trainval-image/0001.jpg"]
    assert_instances(images["trainval-image/0000.jpg"], "thyroid_nodule", [RECT_A, RECT_B])
    assert_instances(images["test-image/0000.jpg"], "thyroid_nodule", [RECT_B])
    assert {s: im["split"] for s, im in images.items()} == {
        "trainval-image/0000.jpg": "train",
        "trainval-image/0001.jpg": "train",
        "test-image/0000.jpg": "test",
    }
    assert {s: im["class_labels"] for s, im in images.items()} == {
        "trainval-image/0000.jpg": ["malignant"],
        "trainval-image/0001.jpg": ["benign"],
        "test-image/0000.jpg": ["benign"],
    }
    assert list(skipped(report)) == ["test-mask/0005.jpg"]
    assert len({im["file_name"] for im in coco["images"]}) == 3


# -------------------------------------------------------------------------------------- TNSCUI


def test_tnscui_accepts_mask_values_1_and_255(tmp_path):
    train = tmp_path / "TNSCUI2020_train"
    image(train / "image" / "0001.PNG")
    mask(train / "mask" / "0001.PNG", [RECT_A, RECT_B], value=255)
    image(train / "image" / "0002.PNG")
    mask(train / "mask" / "0002.PNG", [RECT_C], value=1)
    image(train / "image" / "0003.PNG")
    mask(train / "mask" / "0003.PNG", [])
    (train / "train.csv").write_text("ID,CATE\n0001.PNG,1\n0002.PNG,0\n0003.PNG,1\n")
    report, coco = convert("tnscui", tmp_path, tmp_path / "out")
    images = by_source(coco)
    assert sorted(images) == ["image/0001.PNG", "image/0002.PNG"]
    assert_instances(images["image/0001.PNG"], "thyroid_nodule", [RECT_A, RECT_B])
    assert_instances(images["image/0002.PNG"], "thyroid_nodule", [RECT_C])
    assert images["image/0001.PNG"]["class_labels"] == ["malignant"]
    assert images["image/0002.PNG"]["class_labels"] == ["benign"]
    assert [p.path for p in report.excluded] == ["image/0003.PNG"]
    report, coco = convert("tnscui", tmp_path, tmp_path / "out2", keep_empty=True)
    assert by_source(coco)["image/0003.PNG"]["instances"] == [] and report.empty == ["image/0003.PNG"]


def test_tnscui_voc_layout(tmp_path):
    image(tmp_path / "raw" / "JPEGImages" / "a.jpg")
    mask(tmp_path / "raw" / "SegmentationClass" / "a.png", [RECT_B], value=1)
    report, coco = convert("tnscui", tmp_path / "raw", tmp_path / "out")
    assert_instances(by_source(coco)["JPEGImages/a.jpg"], "thyroid_nodule", [RECT_B])


# ----------------------------------------------------------------------------- unknown layouts


@pytest.mark.parametrize("key", ["105us", "buid", "bus_b", "ccaui", "ddti", "stu_hospital", "tg3k", "tn3k", "tnscui"])
def test_unrecognised_layout_raises(tmp_path, key):
    image(tmp_path / "raw" / "something" / "x.png")
    image(tmp_path / "raw" / "other" / "y.png")
    with pytest.raises(DatasetError, match="expected"):
        run_converter(key, tmp_path / "raw", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
