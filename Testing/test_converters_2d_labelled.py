"""Converters of the 2-D datasets with classes, colour masks or CSV metadata (AbdomenUS, BrEaST,
BUS_UC, BUS-UCLM, BUS-BRA, S1, STMUS_NDA, kidneyUS).

Each test builds a tiny raw folder in the dataset's published layout, with rectangles of known
pixel counts drawn in its masks, and checks the COCO written against those counts (decoded from the
RLE), the ids, labels and splits kept, the pairs skipped or excluded, and ``validate``.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ultrasam_training.data.convert import run_converter
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.masks import decode_rle
from ultrasam_training.data.validate import validate

H, W = 32, 40


# ---------------------------------------------------------------- builders


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def _image(path: Path, shape: tuple[int, int] = (H, W)) -> Path:
    rng = np.random.default_rng(len(path.name))
    return _save(path, rng.integers(20, 200, size=shape, dtype=np.uint8))


def _mask(boxes: list[tuple[int, int, int, int, object]], shape: tuple[int, int] = (H, W), rgb: bool = False):
    """A mask with ``(y, x, height, width, value)`` rectangles; value is a grey level or an RGB triple."""
    array = np.zeros((*shape, 3) if rgb else shape, dtype=np.uint8)
    for y, x, h, w, value in boxes:
        array[y : y + h, x : x + w] = value
    return array


def _write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)


def _truncated(path: Path, source: np.ndarray) -> None:
    _save(path, source)
    path.write_bytes(path.read_bytes()[:40])


def _convert(key: str, raw: Path, out: Path, **options):
    report = run_converter(key, raw, out, progress=False, **options)
    assert validate(report.coco_path, check_files=True) == []
    coco = json.loads(Path(report.coco_path).read_text())
    return report, coco


def _instances(coco: dict) -> dict[str, list[tuple[str, int]]]:
    """``{source_path: sorted [(category, decoded pixel count)]}``."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    found: dict[str, list[tuple[str, int]]] = {image["source_path"]: [] for image in coco["images"]}
    by_id = {image["id"]: image for image in coco["images"]}
    for annotation in coco["annotations"]:
        pixels = int(decode_rle(annotation["segmentation"]).sum())
        assert pixels == annotation["area"]
        found[by_id[annotation["image_id"]]["source_path"]].append((names[annotation["category_id"]], pixels))
    return {path: sorted(values) for path, values in found.items()}


def _images(coco: dict) -> dict[str, dict]:
    return {image["source_path"]: image for image in coco["images"]}


def _reasons(problems) -> dict[str, str]:
    return {p.path: p.reason for p in problems}


# ---------------------------------------------------------------- BUS-BRA


def _busbra(raw: Path) -> Path:
    root = raw / "BUSBRA"
    cases = {
        "0001-l": ("benign", 2, [(2, 2, 4, 5, 255), (20, 20, 3, 4, 255)]),
        "0001-r": ("benign", 3, [(5, 5, 6, 6, 255)]),
        "0002-l": ("malignant", 1, [(10, 10, 7, 3, 255)]),
        "0003-l": (None, None, [(1, 1, 2, 2, 255)]),  # image and mask but no CSV row
    }
    for key, (_, _, boxes) in cases.items():
        _image(root / "Images" / f"bus_{key}.png")
        _save(root / "Masks" / f"mask_{key}.png", _mask(boxes))
    _save(root / "Masks" / "mask_0009-l.png", _mask([]))  # orphan mask
    labelled = [(k, v) for k, v in cases.items() if v[0]]
    _write_csv(
        root / "bus_data.csv",
        [
            {
                "ID": f"bus_{k}",
                "Case": k[:4].lstrip("0"),
                "Histology": "Fibroadenoma" if p == "benign" else "IDC",
                "Pathology": p,
                "BIRADS": "3" if p == "benign" else "5",
                "Device": "GE",
                "Side": k[-1],
            }
            for k, (p, _, _) in labelled
        ],
    )
    _write_csv(root / "5-fold-cv.csv", [{"ID": f"bus_{k}", "Pathology": p, "kFold": f} for k, (p, f, _) in labelled])
    return root


def test_busbra_labels_patients_and_fold_split(tmp_path):
    _busbra(tmp_path / "raw")
    report, coco = _convert("busbra", tmp_path / "raw", tmp_path / "out")
    assert _instances(coco) == {
        "Images/bus_0001-l.png": [("benign", 12), ("benign", 20)],
        "Images/bus_0001-r.png": [("benign", 36)],
        "Images/bus_0002-l.png": [("malignant", 21)],
    }
    images = _images(coco)
    assert {p: i["patient_id"] for p, i in images.items()} == {
        "Images/bus_0001-l.png": "0001",
        "Images/bus_0001-r.png": "0001",
        "Images/bus_0002-l.png": "0002",
    }
    assert {p: i["split"] for p, i in images.items()} == {
        "Images/bus_0001-l.png": "train",
        "Images/bus_0001-r.png": "train",
        "Images/bus_0002-l.png": "test",
    }
    assert images["Images/bus_0002-l.png"]["class_labels"] == ["malignant"]
    assert images["Images/bus_0002-l.png"]["birads"] == "5"
    skipped = _reasons(report.skipped)
    assert set(skipped) == {"Images/bus_0003-l.png", "Masks/mask_0009-l.png"}
    assert "Pathology" in skipped["Images/bus_0003-l.png"]

    _, other = _convert("busbra", tmp_path / "raw" / "BUSBRA", tmp_path / "out2", test_fold=2)
    assert [i["source_path"] for i in other["images"] if i.get("split") == "test"] == ["Images/bus_0001-l.png"]
    _, none = _convert("busbra", tmp_path / "raw", tmp_path / "out3", test_fold=None)
    assert all("split" not in i for i in none["images"])


# ---------------------------------------------------------------- BUS_UC


def test_bus_uc_classes_resized_masks_and_all_folder(tmp_path):
    root = tmp_path / "raw" / "BUS_UC" / "BUS_UC"
    _image(root / "Benign" / "images" / "001.png")
    _save(root / "Benign" / "masks" / "001.png", _mask([(2, 2, 5, 6, 255), (15, 20, 4, 4, 255)]))
    _image(root / "Benign" / "images" / "003.png")  # no mask
    _image(root / "Malignant" / "images" / "002.png")
    _save(root / "Malignant" / "masks" / "002.png", _mask([(3, 4, 5, 5, 255)], shape=(H // 2, W // 2)))
    for name in ("001", "002"):  # All/ repeats the class folders
        _image(root / "All" / "images" / f"{name}.png")
        _save(root / "All" / "masks" / f"{name}.png", _mask([(0, 0, 3, 3, 255)]))
    report, coco = _convert("bus_uc", tmp_path / "raw", tmp_path / "out")
    assert _instances(coco) == {
        "Benign/images/001.png": [("benign", 16), ("benign", 30)],
        "Malignant/images/002.png": [("malignant", 100)],  # 5x5 upscaled x2 (nearest)
    }
    assert _images(coco)["Malignant/images/002.png"]["class_labels"] == ["malignant"]
    assert list(_reasons(report.skipped)) == ["Benign/images/003.png"]
    assert any("Malignant/images/002.png" in n and "resized" in n for n in report.notes)
    assert any(n.startswith("All/ skipped") for n in report.notes)


# ---------------------------------------------------------------- BUS-UCLM


def test_bus_uclm_colours_patients_and_empty_masks(tmp_path):
    root = tmp_path / "raw" / "BUS-UCLM Breast ultrasound lesion segmentation dataset" / "BUS-UCLM"
    green, red, blue = (0, 255, 0), (255, 0, 0), (0, 0, 255)
    masks = {
        "ALWI_000": _mask([(2, 2, 4, 4, green), (20, 25, 3, 5, green)], rgb=True),
        "ALWI_001": _mask([], rgb=True),  # normal
        "BEJU_000": _mask([(5, 5, 6, 7, red), (25, 30, 2, 2, blue)], rgb=True),
    }
    for name, mask in masks.items():
        _image(root / "images" / f"{name}.png")
        _save(root / "masks" / f"{name}.png", mask)
    _image(root / "images" / "HESN_000.png")
    _save(root / "masks" / "HESN_000.png", _mask([(1, 1, 3, 3, green)], shape=(H + 4, W), rgb=True))
    _write_csv(
        root / "INFO.csv",
        [
            {"Image": f"{n}.png", "Resolution": "0.1", "Label": label, "Doppler": "No", "Marks": "No", "Combined": "No"}
            for n, label in (
                ("ALWI_000", "Benign"),
                ("ALWI_001", "Normal"),
                ("BEJU_000", "Malignant"),
                ("HESN_000", "Benign"),
            )
        ],
        delimiter=";",
    )
    report, coco = _convert("bus_uclm", tmp_path / "raw", tmp_path / "out")
    assert _instances(coco) == {
        "images/ALWI_000.png": [("benign", 15), ("benign", 16)],
        "images/BEJU_000.png": [("malignant", 42)],
    }
    images = _images(coco)
    assert images["images/ALWI_000.png"]["patient_id"] == "ALWI"
    assert images["images/BEJU_000.png"]["class_labels"] == ["malignant"]
    assert [p.path for p in report.excluded] == ["images/ALWI_001.png"]
    assert list(_reasons(report.skipped)) == ["images/HESN_000.png"]
    assert any("BEJU_000" in n and "(0, 0, 255)" in n for n in report.notes)

    _, kept = _convert("bus_uclm", tmp_path / "raw", tmp_path / "out2", keep_empty=True)
    assert _instances(kept)["images/ALWI_001.png"] == []


# ---------------------------------------------------------------- S1


def test_s1_values_splits_and_bad_mask(tmp_path):
    data = tmp_path / "raw" / "S1" / "Data"
    for split, boxes in (
        ("TrainingDataSet", [(2, 3, 4, 5, 127), (20, 20, 5, 5, 255)]),
        ("TestingDataSet", [(6, 6, 3, 3, 255), (25, 2, 2, 2, 60)]),
    ):
        Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(_image(data / split / "BreastTumourImages" / "1.jpg"))
        _save(data / split / "Expanded-3-channel-Labels" / "1.png", np.repeat(_mask(boxes)[..., None], 3, axis=2))
        _save(data / split / "General-1-channel-Labels" / "1.png", (_mask(boxes) > 0) * 255)
    Image.fromarray(np.zeros((H, W), np.uint8)).save(data / "TestingDataSet" / "BreastTumourImages" / "2.jpg")
    _truncated(data / "TestingDataSet" / "Expanded-3-channel-Labels" / "2.png", _mask([(1, 1, 9, 9, 255)]))
    report, coco = _convert("s1", tmp_path / "raw", tmp_path / "out")
    train, test = "TrainingDataSet/BreastTumourImages/1.jpg", "TestingDataSet/BreastTumourImages/1.jpg"
    assert _instances(coco) == {train: [("benign", 20), ("malignant", 25)], test: [("malignant", 9)]}
    assert {p: i["split"] for p, i in _images(coco).items()} == {train: "train", test: "test"}
    assert list(_reasons(report.skipped)) == ["TestingDataSet/BreastTumourImages/2.jpg"]
    assert any(test in n and "60" in n for n in report.notes)
    assert sum("General" in n for n in report.notes) == 2


# ---------------------------------------------------------------- STMUS_NDA


def test_stmus_nda_muscles_and_empty_masks(tmp_path):
    root = (
        tmp_path / "raw" / "DATASET for Deep learning segmentation of transverse musculoskeletal ultrasound "
        "images for neuromuscular disease assessment" / "Polito-Radboud-DeepLearningUS"
    )
    cases = {
        ("BB", "Healthy", "a"): [(2, 2, 5, 5, 255), (20, 25, 4, 3, 255)],
        ("GM", "Pathological", "a"): [(4, 4, 6, 6, 1)],  # same name in another muscle
        ("TA", "Healthy", "b"): [],  # empty mask
    }
    for (muscle, condition, name), boxes in cases.items():
        _image(root / muscle / condition / "Images" / f"{name}.png")
        _save(root / muscle / condition / "Masks" / f"{name}.png", _mask(boxes))
    _image(root / "TA" / "Healthy" / "Images" / "c.png")  # no mask
    report, coco = _convert("stmus_nda", tmp_path / "raw", tmp_path / "out")
    bb, gm = "BB/Healthy/Images/a.png", "GM/Pathological/Images/a.png"
    assert _instances(coco) == {
        bb: [("transverse_musculoskeletal", 12), ("transverse_musculoskeletal", 25)],
        gm: [("transverse_musculoskeletal", 36)],
    }
    images = _images(coco)
    assert (images[bb]["muscle"], images[gm]["muscle"]) == ("BB", "GM")
    assert (images[bb]["class_labels"], images[gm]["class_labels"]) == (["healthy"], ["pathological"])
    assert [p.path for p in report.excluded] == ["TA/Healthy/Images/b.png"]
    assert list(_reasons(report.skipped)) == ["TA/Healthy/Images/c.png"]


# ---------------------------------------------------------------- kidneyUS


def test_kidneyus_capsule_only_patients_and_views(tmp_path):
    root = tmp_path / "raw" / "kidneyUS"
    images = root / "kidneyUS_images_14_june_2022" / "kidneyUS_images_14_june_2022"
    capsule = root / "labels" / "reviewed_masks_1" / "capsule"
    names = ["1_IM-0001-0059_anon", "130_IM-0650-0033_anon", "130_IM-0650-0053_anon"]
    boxes = {names[0]: [(2, 2, 10, 12, 1)], names[1]: [(5, 5, 4, 4, 1), (20, 20, 6, 6, 1)], names[2]: []}
    for name, drawn in boxes.items():
        _image(images / f"{name}.png")
        _save(capsule / f"{name}.png", _mask(drawn))
        _save(root / "labels" / "reviewed_masks_1" / "regions" / f"{name}.png", _mask([(0, 0, 20, 20, 3)]))
    _image(images / "7_IM-0007-0001_anon.png")  # not annotated
    _save(capsule / "9_IM-0009-0001_anon.png", _mask([(1, 1, 2, 2, 1)]))  # no image
    _image(root / "labels" / "images" / f"{names[0]}.png")  # repository picture, not the data
    _write_csv(
        root / "labels" / "reviewed_labels_1.csv",
        [
            {
                "filename": f"{n}.png",
                "file_size": "1",
                "region_count": "1",
                "region_id": "0",
                "file_attributes": json.dumps({"Quality": "Good", "View": view, "Comments": ""}),
                "region_shape_attributes": "{}",
                "region_attributes": json.dumps({"Anatomy": "Capsule"}),
            }
            for n, view in zip(names, ("Longitudinal", "Transverse", "Transverse"))
        ],
    )
    report, coco = _convert("kidneyus", tmp_path / "raw", tmp_path / "out")
    first = f"kidneyUS_images_14_june_2022/kidneyUS_images_14_june_2022/{names[0]}.png"
    second = f"kidneyUS_images_14_june_2022/kidneyUS_images_14_june_2022/{names[1]}.png"
    assert _instances(coco) == {first: [("kidney", 120)], second: [("kidney", 16), ("kidney", 36)]}
    info = _images(coco)
    assert (info[first]["patient_id"], info[second]["patient_id"]) == ("1", "130")
    assert (info[first]["view"], info[second]["view"]) == ("Longitudinal", "Transverse")
    assert {p.path.rsplit("/", 1)[-1] for p in report.excluded} == {f"{names[2]}.png", "7_IM-0007-0001_anon.png"}
    assert list(_reasons(report.skipped)) == ["labels/reviewed_masks_1/capsule/9_IM-0009-0001_anon.png"]


# ---------------------------------------------------------------- BrEaST


def test_breast_labels_several_masks_and_clinical_csv(tmp_path):
    top = tmp_path / "raw" / "BrEaST-Lesions_USG-images_and_masks-Dec-15-2023"
    root = top / "BrEaST-Lesions_USG-images_and_masks"
    _image(root / "case001.png")
    _save(root / "case001_tumor.png", _mask([(2, 2, 4, 4, 255), (20, 20, 3, 3, 255)]))
    _save(root / "case001_other.png", _mask([(10, 25, 5, 2, 255)]))
    _image(root / "case002.png")  # normal: no mask
    _image(root / "case003.png")
    _save(root / "case003_tumor1.png", _mask([(1, 1, 6, 6, 255)]))
    _save(root / "case003_tumor2.png", _mask([(15, 15, 2, 7, 255)]))
    _image(root / "case004.png")
    _save(root / "case004_tumor.png", _mask([(1, 1, 3, 3, 255)], shape=(H, W + 2)))  # size mismatch
    _write_csv(
        top / "BrEaST-Lesions-USG-clinical-data-Dec-15-2023.csv",
        [
            {"CaseID": str(i), "Image_filename": f"case00{i}.png", "Classification": c, "BIRADS": b}
            for i, c, b in ((1, "benign", "4a"), (2, "normal", "1"), (3, "malignant", "5"))
        ],
    )
    report, coco = _convert("breast", tmp_path / "raw", tmp_path / "out")
    assert _instances(coco) == {
        "case001.png": [("cyst", 10), ("tumor", 9), ("tumor", 16)],
        "case003.png": [("tumor", 14), ("tumor", 36)],
    }
    images = _images(coco)
    assert (images["case001.png"]["class_labels"], images["case003.png"]["birads"]) == (["benign"], "5")
    assert images["case003.png"]["patient_id"] == "case003"
    assert [p.path for p in report.excluded] == ["case002.png"]
    assert list(_reasons(report.skipped)) == ["case004.png"]
    assert any("cyst: other" in n for n in report.notes)


# ---------------------------------------------------------------- AbdomenUS


def test_abdomenus_rgb_colours_and_aus_exclusion(tmp_path):
    root = tmp_path / "raw" / "archive" / "abdominal_US" / "abdominal_US"
    yellow, cyan, blue, green, grey = (255, 255, 0), (0, 255, 255), (0, 0, 255), (0, 255, 0), (7, 7, 7)
    Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(_image(root / "RUS" / "images" / "test" / "r1.jpg"))
    _save(
        root / "RUS" / "annotations" / "test" / "r1.png",
        _mask([(1, 1, 4, 6, yellow), (10, 10, 3, 3, cyan), (20, 2, 5, 5, blue), (28, 30, 2, 2, grey)], rgb=True),
    )
    _image(root / "RUS" / "images" / "train" / "r2.png")  # real scan without annotation
    _image(root / "AUS" / "images" / "train" / "r1.png")  # same name as the RUS image
    _save(root / "AUS" / "annotations" / "train" / "r1.png", _mask([(3, 3, 7, 2, green)], rgb=True))
    report, coco = _convert("abdomenus", tmp_path / "raw", tmp_path / "out")
    assert _instances(coco) == {
        "RUS/images/test/r1.jpg": [("adrenals", 9), ("kidney", 24), ("pancreas", 25)],
    }
    assert "split" not in coco["images"][0]
    excluded = _reasons(report.excluded)
    assert set(excluded) == {"RUS/images/train/r2.png", "AUS/images/train/r1.png"}
    assert excluded["AUS/images/train/r1.png"].startswith("AUS")
    assert any("(7, 7, 7)" in n for n in report.notes)

    _, both = _convert("abdomenus", tmp_path / "raw", tmp_path / "out2", include_aus=True, folder_split=True)
    assert _instances(both)["AUS/images/train/r1.png"] == [("gallbladder", 14)]
    assert {p: i["split"] for p, i in _images(both).items()} == {
        "RUS/images/test/r1.jpg": "test",
        "AUS/images/train/r1.png": "train",
    }


# ---------------------------------------------------------------- all of them


KEYS = ("abdomenus", "breast", "bus_uc", "bus_uclm", "busbra", "s1", "stmus_nda", "kidneyus")


@pytest.mark.parametrize("key", KEYS)
def test_unrecognised_layout_raises(tmp_path, key):
    raw = tmp_path / "raw"
    _image(raw / "misc" / "scan.png")
    (raw / "README.txt").write_text("not this dataset")
    with pytest.raises(DatasetError, match="expected"):
        run_converter(key, raw, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "annotations").exists()


@pytest.mark.parametrize("key", KEYS)
def test_categories_follow_the_catalogue(key):
    from ultrasam_training.data import registry
    from ultrasam_training.data.convert import converter_module

    assert tuple(converter_module(key).CATEGORIES) == tuple(registry.get(key).classes)


def test_limit_counts_converted_images(tmp_path):
    _busbra(tmp_path / "raw")
    report, coco = _convert("busbra", tmp_path / "raw", tmp_path / "out", limit=2)
    assert report.images == len(coco["images"]) == 2
    assert Counter(i["patient_id"] for i in coco["images"]) == {"0001": 2}
