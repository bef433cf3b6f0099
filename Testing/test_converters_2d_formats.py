"""Converters of the 2-D datasets in special formats: ASUS, AUL, FALLMUD, FASS, Fast-U-Net,
GIST514-DB, LUSS phantom, UBPD, MMOTU-3D.

Each test builds a tiny raw folder in the dataset's published layout and file formats, with
shapes of known pixel counts drawn in, runs the converter through ``run_converter`` and checks the
COCO written: images, instances per category, areas (decoded with pycocotools), ids, labels and
splits, and that bad pairs are named in ``report.skipped``. Expected values are counted by hand
from the drawn shapes, never taken from the converters.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from ultrasam_training.data.convert import run_converter
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.validate import validate

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")
RNG = np.random.default_rng(7)


# ---------------------------------------------------------------- helpers


def _image(path: Path, height: int, width: int, rgb: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (height, width, 3) if rgb else (height, width)
    Image.fromarray(RNG.integers(20, 230, shape, dtype=np.uint8)).save(path)
    return path


def _mask(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def _json(path: Path, data, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding=encoding)
    return path


def _convert(key: str, raw: Path, out: Path, **options):
    report = run_converter(key, raw, out, progress=False, **options)
    coco = json.load(open(report.coco_path))
    assert validate(report.coco_path, check_files=True) == []
    return report, coco


def _decode(annotation: dict) -> np.ndarray:
    rle = dict(annotation["segmentation"])
    rle["counts"] = rle["counts"].encode("ascii")
    return mask_utils.decode(rle).astype(bool)


def _areas(coco: dict, image: dict | None = None) -> dict[str, list[int]]:
    """Category name -> sorted decoded pixel counts (of one image or all)."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    result: dict[str, list[int]] = {}
    for ann in coco["annotations"]:
        if image is None or ann["image_id"] == image["id"]:
            area = int(_decode(ann).sum())
            assert ann["area"] == area
            result.setdefault(names[ann["category_id"]], []).append(area)
    return {name: sorted(values) for name, values in result.items()}


def _by_source(coco: dict) -> dict[str, dict]:
    return {image["source_path"]: image for image in coco["images"]}


def _skipped(report) -> set[str]:
    return {p.path for p in report.skipped}


# ---------------------------------------------------------------- AUL


def _rect(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def test_aul(tmp_path):
    raw = tmp_path / "AUL"
    benign = raw / "Benign" / "Benign"  # the inner Benign.zip unpacks one level down
    _image(benign / "image" / "1.jpg", 40, 48, rgb=True)
    _json(benign / "segmentation" / "liver" / "1.json", _rect(2, 2, 21, 15))  # PIL fill+outline: 20 x 14
    _json(benign / "segmentation" / "mass" / "1.json", _rect(30, 20, 39, 29))  # 10 x 10
    _json(benign / "segmentation" / "outline" / "1.json", _rect(0, 0, 47, 39))  # field of view: left out
    _json(benign / "segmentation" / "mass" / "9.json", _rect(1, 1, 5, 5))  # no image 9
    malignant = raw / "Malignant"
    _image(malignant / "image" / "2.jpg", 40, 48)
    _json(malignant / "segmentation" / "mass" / "2.json", _rect(5, 5, 9, 14))  # 5 x 10, no liver file
    _image(malignant / "image" / "3.jpg", 40, 48)
    _json(malignant / "segmentation" / "liver" / "3.json", [])
    (malignant / "segmentation" / "liver" / "3.json").write_text("[[1, 2], [3,")  # truncated
    normal = raw / "Normal"
    _image(normal / "image" / "4.jpg", 30, 30)
    _json(normal / "segmentation" / "liver" / "4.json", [[0, 0], [9, 0], [0, 9]])  # triangle: 55 pixels

    report, coco = _convert("aul", raw, tmp_path / "out")

    images = _by_source(coco)
    assert sorted(images) == ["Benign/Benign/image/1.jpg", "Malignant/image/2.jpg", "Normal/image/4.jpg"]
    assert _areas(coco, images["Benign/Benign/image/1.jpg"]) == {"liver": [280], "mass": [100]}
    assert _areas(coco, images["Malignant/image/2.jpg"]) == {"mass": [50]}
    assert _areas(coco, images["Normal/image/4.jpg"]) == {"liver": [55]}
    assert {s: i["class_labels"] for s, i in images.items()} == {
        "Benign/Benign/image/1.jpg": ["benign"],
        "Malignant/image/2.jpg": ["malignant"],
        "Normal/image/4.jpg": ["normal"],
    }
    assert _skipped(report) == {"Benign/Benign/segmentation/mass/9.json", "Malignant/image/3.jpg"}
    assert any("outline" in note for note in report.notes)


# ---------------------------------------------------------------- UBPD


def _labelme(shapes, height, width, image_path="x.jpg"):
    return {
        "version": "4.5.6",
        "flags": {},
        "imagePath": image_path,
        "imageData": None,
        "imageHeight": height,
        "imageWidth": width,
        "shapes": [
            {"label": label, "points": points, "group_id": None, "shape_type": kind, "flags": {}}
            for label, points, kind in shapes
        ],
    }


def test_ubpd(tmp_path):
    raw = tmp_path / "UBPD"
    _image(raw / "12_1.jpg", 40, 48, rgb=True)
    _json(
        raw / "12_1.json",
        _labelme(
            [
                ("dongmai", _rect(2, 2, 11, 11), "polygon"),  # artery 10 x 10
                ("jingmai ", _rect(20, 2, 24, 11), "polygon"),  # vein 5 x 10 (label with a trailing space)
                ("shenjing", [[30, 20], [39, 29]], "rectangle"),  # nerve 10 x 10
                ("shenjing", _rect(2, 30, 4, 33), "polygon"),  # second nerve 3 x 4
                ("xueguan", _rect(40, 30, 45, 35), "polygon"),  # unknown label: reported
            ],
            40,
            48,
            image_path="图像12_1.jpg",
        ),
        encoding="gb18030",
    )  # labelme files from Chinese Windows
    _image(raw / "sub" / "13_4.jpg", 30, 30)
    _json(
        raw / "sub" / "13_4.json",
        _labelme(
            [
                ("jirouzuzhi", _rect(0, 0, 29, 4), "polygon"),  # muscle 30 x 5
                ("zhifang", _rect(0, 10, 9, 11), "polygon"),  # fat 10 x 2
                ("jizhu", _rect(20, 20, 22, 22), "polygon"),  # spine 3 x 3
            ],
            30,
            30,
        ),
    )
    _image(raw / "13_5.jpg", 30, 30)
    _json(raw / "13_5.json", _labelme([("dongmai", _rect(1, 1, 3, 3), "polygon")], 31, 30))  # wrong size
    _json(raw / "14_1.json", _labelme([("dongmai", _rect(1, 1, 3, 3), "polygon")], 30, 30))  # no image

    report, coco = _convert("ubpd", raw, tmp_path / "out")

    images = _by_source(coco)
    assert sorted(images) == ["12_1.jpg", "sub/13_4.jpg"]
    assert _areas(coco, images["12_1.jpg"]) == {"artery": [100], "vein": [50], "nerve": [12, 100]}
    assert _areas(coco, images["sub/13_4.jpg"]) == {"muscle": [150], "fat": [20], "spine": [9]}
    assert {s: i["patient_id"] for s, i in images.items()} == {"12_1.jpg": "12", "sub/13_4.jpg": "13"}
    assert _skipped(report) == {"13_5.jpg", "14_1.json"}
    assert any("xueguan" in note and "12_1.jpg" in note for note in report.notes)


# ---------------------------------------------------------------- GIST514-DB


def _coco_polygon(image_id, category_id, x0, y0, x1, y1):
    return {
        "image_id": image_id,
        "category_id": category_id,
        "iscrowd": 0,
        "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
    }


def test_gist514_db(tmp_path):
    root = tmp_path / "GIST514-DB" / "usd514_jpeg_roi"
    for name in ("a.jpg", "b.jpg", "d.jpg"):
        _image(root / "images" / name, 40, 48, rgb=True)
    _json(
        root / "annotations" / "train_anno_crop_split_0.json",
        {
            "images": [{"id": 1, "file_name": "a.jpg", "height": 40, "width": 48}],
            "annotations": [_coco_polygon(1, 1, 2, 2, 12, 12), _coco_polygon(1, 1, 20, 20, 30, 25)],
            "categories": [{"id": 1, "name": "lmym"}, {"id": 2, "name": "gist"}],
        },
    )
    _json(
        root / "annotations" / "val_anno_crop_split_0.json",
        {
            "images": [
                {"id": 7, "file_name": "b.jpg", "height": 40, "width": 48},
                {"id": 8, "file_name": "c.jpg", "height": 40, "width": 48},
            ],  # c.jpg is missing
            "annotations": [_coco_polygon(7, 5, 0, 0, 16, 8), _coco_polygon(8, 5, 0, 0, 4, 4)],
            "categories": [{"id": 5, "name": "GIST"}],
        },
    )  # matched by name, not id

    report, coco = _convert("gist514_db", tmp_path / "GIST514-DB", tmp_path / "out")

    images = _by_source(coco)
    assert sorted(images) == ["images/a.jpg", "images/b.jpg"]
    assert _areas(coco, images["images/a.jpg"]) == {"lmym": [50, 100]}  # 10 x 10 and 10 x 5
    assert _areas(coco, images["images/b.jpg"]) == {"gist": [128]}  # 16 x 8
    assert {s: (i["split"], i["class_labels"]) for s, i in images.items()} == {
        "images/a.jpg": ("train", ["lmym"]),
        "images/b.jpg": ("test", ["gist"]),
    }
    assert _skipped(report) == {"images/c.jpg"}
    assert any("neither split file" in note for note in report.notes)  # d.jpg


# ---------------------------------------------------------------- FALLMUD


def test_fallmud(tmp_path):
    root = tmp_path / "FALLMUD"
    neil = root / "NeilCronin"
    _image(neil / "images" / "img_01.jpg", 40, 48, rgb=True)
    apo = np.zeros((40, 48), np.uint8)
    apo[5:8, :] = 230  # upper aponeurosis 3 x 48
    apo[30:33, :] = 180  # lower aponeurosis 3 x 48
    apo[8, :] = 60  # compression fringe below the threshold of 100
    _mask(neil / "aponeurosis_masks" / "img_01.png", np.stack([apo] * 3, axis=-1))
    fascicle = np.zeros((40, 48), np.uint8)
    fascicle[12:14, 5:25] = 255  # 2 x 20
    fascicle[20:22, 30:40] = 255  # 2 x 10
    _mask(neil / "fascicle_masks" / "img_01.png", fascicle)
    _image(neil / "images" / "img_02.jpg", 40, 48)
    _mask(neil / "aponeurosis_masks" / "img_02.png", apo)  # no fascicle mask

    ryan = root / "RyanCunningham"
    _image(ryan / "images" / "r1.png", 40, 48)
    stored = np.zeros((48, 40), np.uint8)  # stored transposed
    stored[0:10, 0:5] = 255  # top-left 10 rows x 5 columns
    _mask(ryan / "aponeurosis_masks" / "r1.png", stored)
    r_fascicle = np.zeros((40, 48), np.uint8)
    r_fascicle[30:32, 0:6] = 255  # 2 x 6
    _mask(ryan / "fascicle_masks" / "r1.png", r_fascicle)

    report, coco = _convert("fallmud", tmp_path, tmp_path / "out")

    images = _by_source(coco)
    assert sorted(images) == ["NeilCronin/images/img_01.jpg", "RyanCunningham/images/r1.png"]
    assert _areas(coco, images["NeilCronin/images/img_01.jpg"]) == {"aponeurosis": [144, 144], "fascicle": [20, 40]}
    assert _areas(coco, images["RyanCunningham/images/r1.png"]) == {"aponeurosis": [50], "fascicle": [12]}
    # clockwise 90 degrees: stored rows 0-9 / cols 0-4 -> rows 0-4, columns 47-9 .. 47
    rotated = [
        a
        for a in coco["annotations"]
        if a["image_id"] == images["RyanCunningham/images/r1.png"]["id"] and a["category_id"] == 1
    ]
    assert rotated[0]["bbox"] == [38, 0, 10, 5]
    assert {i["centre"] for i in coco["images"]} == {"NeilCronin", "RyanCunningham"}
    assert _skipped(report) == {"NeilCronin/images/img_02.jpg"}
    assert any("rotated" in note for note in report.notes)


# ---------------------------------------------------------------- FASS


def test_fass(tmp_path):
    root = tmp_path / "Fetal Abdominal Structures Segmentation Dataset Using Ultrasonic Images"

    def structures(**boxes):
        result = {}
        for name, (y0, y1, x0, x1) in boxes.items():
            mask = np.zeros((32, 40), np.uint8)
            mask[y0:y1, x0:x1] = 1
            result[name] = mask
        return result

    _image(root / "IMAGES" / "P001_IMG1.png", 32, 40, rgb=True)
    artery = structures(artery=(2, 6, 2, 8))["artery"]
    artery[20:23, 30:33] = 1  # a second artery component, 3 x 3
    data = {
        "image": np.zeros((32, 40, 3), np.uint8),
        "structures": {
            "artery": artery,
            **structures(liver=(10, 20, 0, 15), stomach=(25, 30, 5, 9), vein=(0, 2, 30, 40), kidney=(28, 30, 30, 35)),
        },
    }
    (root / "ARRAY_FORMAT").mkdir(parents=True)
    np.save(root / "ARRAY_FORMAT" / "P001_IMG1.npy", data, allow_pickle=True)
    _image(root / "IMAGES" / "P001_IMG2.png", 32, 40)
    np.save(root / "ARRAY_FORMAT" / "P001_IMG2.npy", {"structures": structures(liver=(0, 4, 0, 4))}, allow_pickle=True)
    _image(root / "IMAGES" / "P002_IMG1.png", 32, 40)
    good = (root / "ARRAY_FORMAT" / "P001_IMG2.npy").read_bytes()
    (root / "ARRAY_FORMAT" / "P002_IMG1.npy").write_bytes(good[: len(good) // 2])  # truncated
    _image(root / "IMAGES" / "P003_IMG1.png", 32, 40)  # no arrays
    _image(root / "IMAGES" / "P004_IMG1.png", 32, 40)
    marker = tmp_path / "pwned"
    np.save(root / "ARRAY_FORMAT" / "P004_IMG1.npy", {"structures": {"liver": _Payload(marker)}}, allow_pickle=True)

    report, coco = _convert("fass", tmp_path, tmp_path / "out")
    assert not marker.exists()  # a tampered array file is skipped, its pickle never run

    images = _by_source(coco)
    assert sorted(images) == ["IMAGES/P001_IMG1.png", "IMAGES/P001_IMG2.png"]
    assert _areas(coco, images["IMAGES/P001_IMG1.png"]) == {
        "artery": [9, 24],
        "liver": [150],
        "stomach": [20],
        "vein": [20],
    }
    assert _areas(coco, images["IMAGES/P001_IMG2.png"]) == {"liver": [16]}
    assert _skipped(report) == {"IMAGES/P002_IMG1.png", "IMAGES/P003_IMG1.png", "IMAGES/P004_IMG1.png"}
    assert any("kidney" in note for note in report.notes)


class _Payload:
    """Unpickling this would run ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


# ---------------------------------------------------------------- Fast-U-Net


def test_fast_u_net(tmp_path):
    dataset = tmp_path / "Fast-U-Net" / "Dataset"
    ac, hc = dataset / "AC", dataset / "HC"
    _image(ac / "AC_image1" / "0001.png", 64, 64)
    mask = np.zeros((64, 64), np.uint8)
    mask[10:30, 10:30] = 255  # 20 x 20: kept whole by a 12 x 12 opening
    mask[40:54, 40:54] = 255  # 14 x 14: survives the erosion but is not the largest -> dropped
    mask[2:6, 50:54] = 255  # 4 x 4 speck: eroded away
    _mask(ac / "AC_mask" / "0001.png", mask)
    _image(ac / "AC_image2" / "fa_0002.png", 64, 64)
    speck = np.zeros((64, 64), np.uint8)
    speck[5:10, 5:10] = 255  # only a speck: nothing left -> excluded
    _mask(ac / "AC_mask" / "fa_0002.png", speck)
    (ac / "train.txt").write_text("resized_data/image/0001.png resized_data/mask/0001.png\n")
    _image(hc / "HC_image1" / "014_2HC.png", 64, 64)
    head = np.zeros((64, 64), np.uint8)
    head[30:46, 20:36] = 255  # 16 x 16
    _mask(hc / "HC_mask" / "014_2HC_Annotation.png", head)
    _image(hc / "HC_image2" / "015_HC.png", 64, 64)  # mask missing
    (dataset / "val.txt").write_text("resized_data/image/014_2HC.png resized_data/mask/014_2HC_Annotation.png\n")

    report, coco = _convert("fast_u_net", tmp_path / "Fast-U-Net", tmp_path / "out")

    images = _by_source(coco)
    assert sorted(images) == ["AC/AC_image1/0001.png", "HC/HC_image1/014_2HC.png"]
    ac_image, hc_image = images["AC/AC_image1/0001.png"], images["HC/HC_image1/014_2HC.png"]
    assert _areas(coco, ac_image) == {"ac_hc": [400]}
    assert _areas(coco, hc_image) == {"ac_hc": [256]}
    kept = [a for a in coco["annotations"] if a["image_id"] == ac_image["id"]]
    assert kept[0]["bbox"] == [10, 10, 20, 20]
    assert (ac_image["split"], ac_image["class_labels"], ac_image.get("patient_id")) == ("train", ["AC"], None)
    assert (hc_image["split"], hc_image["class_labels"], hc_image["patient_id"]) == ("val", ["HC"], "014")
    assert _skipped(report) == {"HC/HC_image2/015_HC.png"}
    assert [p.path for p in report.excluded] == ["AC/AC_image2/fa_0002.png"]


def test_fast_u_net_rar_only(tmp_path):
    for name in ("AC/AC_image1.rar", "AC/AC_mask.rar", "HC/HC_mask.rar"):
        (tmp_path / "Dataset" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "Dataset" / name).write_bytes(b"Rar!\x1a\x07\x00")
    with pytest.raises(DatasetError, match="extract"):
        run_converter("fast_u_net", tmp_path, tmp_path / "out", progress=False)


# ---------------------------------------------------------------- LUSS phantom


def test_luss_phantom(tmp_path):
    data = tmp_path / "LUSS" / "data-3"
    labels = np.zeros((40, 48), np.uint8)
    labels[0:4, 0:10] = 1  # rib 40
    labels[0:4, 20:30] = 1  # second rib 40
    labels[10:12, 0:48] = 2  # pleural line 96
    labels[20:21, 5:25] = 3  # A-line 20
    labels[25:35, 40:42] = 4  # B-line 20
    labels[30:36, 10:16] = 5  # confluence 36
    labels[38:40, 46:48] = 7  # not a class: reported
    _image(data / "train" / "images" / "clip01-F3.png", 40, 48, rgb=True)
    _mask(data / "train" / "masks" / "clip01-F3.png", labels)
    _image(data / "test" / "images" / "clip02-F1.png", 40, 48)
    only_rib = np.zeros((40, 48), np.uint8)
    only_rib[5:10, 5:10] = 1
    _mask(data / "test" / "masks" / "clip02-F1.png", only_rib)
    _image(data / "test" / "images" / "clip02-F2.png", 40, 48)  # mask missing

    report, coco = _convert("luss_phantom", tmp_path / "LUSS", tmp_path / "out")

    images = _by_source(coco)
    train, test = images["data-3/train/images/clip01-F3.png"], images["data-3/test/images/clip02-F1.png"]
    assert len(images) == 2
    assert _areas(coco, train) == {
        "rib": [40, 40],
        "pleural_line": [96],
        "a_line": [20],
        "b_line": [20],
        "b_line_confluence": [36],
    }
    assert _areas(coco, test) == {"rib": [25]}
    assert (train["split"], train["case_id"], test["split"], test["case_id"]) == ("train", "clip01", "test", "clip02")
    assert _skipped(report) == {"data-3/test/images/clip02-F2.png"}
    assert any("[7]" in note for note in report.notes)


# ---------------------------------------------------------------- MMOTU-3D


def test_mmotu_3d(tmp_path):
    otu = tmp_path / "MMOTU" / "OTU_3d"
    _image(otu / "images" / "1.JPG", 40, 48, rgb=True)
    colour = np.zeros((40, 48, 3), np.uint8)
    colour[2:12, 2:12] = (64, 0, 128)  # 100
    colour[20:25, 30:40] = (0, 0, 255)  # 50, only the blue channel set
    _mask(otu / "annotations" / "1.PNG", colour)
    _mask(otu / "annotations" / "1_binary.PNG", np.full((40, 48), 255))  # variant: not used
    _image(otu / "images" / "2.JPG", 40, 48)
    _mask(otu / "annotations" / "2.PNG", np.ones((30, 48)))  # size mismatch
    _image(otu / "images" / "3.JPG", 20, 20)
    grey = np.zeros((20, 20), np.uint8)
    grey[0:3, 0:4] = 1
    _mask(otu / "annotations" / "3.PNG", grey)
    (otu / "train.txt").write_text("1\n2\n")
    (otu / "val.txt").write_text("3\n")

    report, coco = _convert("mmotu_3d", tmp_path, tmp_path / "out")

    images = _by_source(coco)
    assert sorted(images) == ["images/1.JPG", "images/3.JPG"]
    assert _areas(coco, images["images/1.JPG"]) == {"lesion": [50, 100]}
    assert _areas(coco, images["images/3.JPG"]) == {"lesion": [12]}
    assert (images["images/1.JPG"]["split"], images["images/3.JPG"]["split"]) == ("train", "val")
    assert _skipped(report) == {"images/2.JPG"}
    assert any("_" in note and "annotations" in note for note in report.notes)


# ---------------------------------------------------------------- ASUS


def _asus_arrays(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    images = (np.arange(3 * 32 * 24, dtype=np.float32).reshape(3, 32, 24, 1) % 97 / 96).astype(np.float16)
    masks = np.zeros((3, 32, 24, 1), np.uint8)
    masks[1, 2:6, 10:14] = 1  # 4 x 4
    masks[1, 20:30, 0:3] = 1  # 10 x 3
    masks[2, 0:5, 0:5] = 1  # 5 x 5
    np.save(folder / "q000_ultrasound.npy", images)
    np.save(folder / "q000_segmentation.npy", masks)
    np.save(folder / "q001_ultrasound.npy", images[:1])  # no segmentation array
    return images, masks


@pytest.mark.parametrize("transpose", [True, False])
def test_asus(tmp_path, transpose):
    images, _ = _asus_arrays(tmp_path / "ASUS" / "DataArrays")

    options = {} if transpose else {"transpose": False}
    report, coco = _convert("asus", tmp_path / "ASUS", tmp_path / "out", **options)

    assert [(i["source_path"], i["slice"], i["patient_id"]) for i in coco["images"]] == [
        ("DataArrays/q000_ultrasound.npy#slice=1", 1, "q000"),
        ("DataArrays/q000_ultrasound.npy#slice=2", 2, "q000"),
    ]
    assert [p.path for p in report.excluded] == ["DataArrays/q000_ultrasound.npy#slice=0"]
    assert _areas(coco) == {"spine": [16, 25, 30]}
    first = coco["images"][0]
    expected = np.rint(images[1, :, :, 0].astype(np.float32) * 255).astype(np.uint8)
    expected = expected.T if transpose else expected
    assert (first["height"], first["width"]) == expected.shape
    written = np.asarray(Image.open(Path(report.coco_path).parents[1] / first["file_name"]))
    assert np.array_equal(written, expected)
    block = [a for a in coco["annotations"] if a["image_id"] == first["id"] and a["area"] == 16][0]
    assert block["bbox"] == ([2, 10, 4, 4] if transpose else [10, 2, 4, 4])  # stored rows 2-5, cols 10-13
    assert _skipped(report) == {"DataArrays/q001_ultrasound.npy"}


# ---------------------------------------------------------------- layouts not recognised


@pytest.mark.parametrize(
    "key", ["asus", "aul", "fallmud", "fass", "fast_u_net", "gist514_db", "luss_phantom", "ubpd", "mmotu_3d"]
)
def test_unrecognised_layout(tmp_path, key):
    _image(tmp_path / "raw" / "stray" / "picture.png", 8, 8)
    with pytest.raises(DatasetError):
        run_converter(key, tmp_path / "raw", tmp_path / "out", progress=False)


def test_instances_are_counted_in_the_report(tmp_path):
    root = tmp_path / "OTU_3d"
    _image(root / "images" / "5.JPG", 16, 16)
    mask = np.zeros((16, 16), np.uint8)
    mask[0:2, 0:2] = 255
    mask[10:12, 10:12] = 255
    _mask(root / "annotations" / "5.PNG", mask)
    report, coco = _convert("mmotu_3d", root, tmp_path / "out")
    assert (report.images, report.instances) == (1, 2)
    assert Counter(a["category_id"] for a in coco["annotations"]) == Counter({1: 2})
