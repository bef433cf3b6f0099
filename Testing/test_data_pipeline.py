"""The US-43d data pipeline on real ultrasound (../shared/data) and on COCO variants built here.

Expected values come from the raw files through other code than the converters: scipy.ndimage
labelling for instance counts, OpenCV ellipse fitting for HC18 heads, pycocotools decoding the
original MMOTU file, hand-computed run lengths for uncompressed RLE.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from scipy import ndimage

from ultrasam.cli import main as cli_main
from ultrasam.errors import OutputExistsError
from ultrasam_training.data import registry
from ultrasam_training.data.agnostic import make_class_agnostic
from ultrasam_training.data.build import build_shared_splits
from ultrasam_training.data.coco import CocoBuilder, decode_annotation_mask, load_coco, resolve_image_path, write_coco
from ultrasam_training.data.convert import ConvertOptions, busi, hc18, mmotu, run_converter
from ultrasam_training.data.convert.samples import EMPTY_EXCLUDED
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.filters import cap_instances, filter_small_objects
from ultrasam_training.data.masks import encode_mask, segmentation_to_rle
from ultrasam_training.data.merge import merge_cocos
from ultrasam_training.data.split import apply_splits, patient_key, patients_shared, split_train_val
from ultrasam_training.data.stats import compute_stats, plot_stats
from ultrasam_training.data.validate import validate

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")
EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity structure for scipy.ndimage.label
US43D_NAMES = (
    "105US",
    "AbdomenUS",
    "ACOUSLIC",
    "ASUS",
    "AUL",
    "brachial plexus",
    "BrEaST",
    "BUID",
    "BUS_UC",
    "BUS_UCLM",
    "BUS-BRA",
    "BUS (Dataset B)",
    "BUSI",
    "CAMUS",
    "CardiacUDC",
    "CCAUI",
    "DDTI",
    "EchoCP",
    "EchoNet-Dynamic",
    "EchoNet-Pediatric",
    "FALLMUD",
    "FASS",
    "Fast-U-Net",
    "FH-PS-AOP",
    "GIST514-DB",
    "HC18",
    "kidneyUS",
    "LUSS phantom",
    "MicroSeg",
    "MMOTU-2D",
    "MMOTU-3D",
    "MUP",
    "regPro",
    "S1",
    "Segthy",
    "STMUS_NDA",
    "STU-Hospital",
    "TG3K",
    "Thyroid US Cineclip",
    "TN3K",
    "TNSCUI",
    "UBPD",
    "Ultrasound Nerve Segmentation",
)


def _components(mask: np.ndarray) -> list[np.ndarray]:
    labels, count = ndimage.label(mask, structure=EIGHT)
    return [labels == index for index in range(1, count + 1)]


def _gray(path: Path) -> np.ndarray:
    array = np.asarray(Image.open(path))
    return array if array.ndim == 2 else array[..., 0]


def _column_major_runs(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts, computed by hand: runs over the column-major pixel order, zeros first."""
    flat = mask.astype(np.uint8).flatten(order="F")
    runs, current, length = [], 0, 0
    for value in flat:
        if value == current:
            length += 1
        else:
            runs.append(length)
            current, length = value, 1
    runs.append(length)
    return runs


# ---------------------------------------------------------------- converted real data (once per module)


@pytest.fixture(scope="module")
def converted(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted")
    return {
        "busi": busi.convert(data_dir / "busi", out / "busi", ConvertOptions(image_mode="reference", progress=False)),
        "hc18": hc18.convert(data_dir / "hc18", out / "hc18", ConvertOptions(image_mode="reference", progress=False)),
        "mmotu_2d": mmotu.convert(data_dir / "mmotu_sample", out / "mmotu_2d", ConvertOptions(progress=False)),
    }


# ---------------------------------------------------------------- registry


def test_registry_lists_the_43_datasets_with_unambiguous_names():
    datasets = registry.all_datasets()
    assert len(datasets) == 43
    assert sorted(info.name for info in datasets) == sorted(US43D_NAMES)
    spellings: dict[str, str] = {}
    for info in datasets:
        for spelling in (info.key, info.name, *info.aliases):
            normal = "".join(ch for ch in spelling.lower() if ch.isalnum())
            assert spellings.setdefault(normal, info.key) == info.key, f"{spelling!r} names two datasets"
        assert info.url == "unknown" or info.url.startswith(("https://", "http://"))
        assert info.licence and info.raw_layout and info.organ and info.application and info.classes
        assert info.dimensionality in ("2D", "2D+t", "3D", "video")
    assert {info.key for info in registry.with_converter()} == {info.key for info in datasets}
    assert registry.get("Dataset_BUSI_with_GT").key == "busi"
    assert registry.get("mmotu-sample").key == "mmotu_2d"
    with pytest.raises(DatasetError, match="unknown dataset"):
        registry.get("no-such-set")


@pytest.mark.parametrize("key", [info.key for info in registry.all_datasets()])
def test_every_converter_takes_the_common_options_and_refuses_a_foreign_folder(key, tmp_path):
    import inspect

    from ultrasam_training.data.convert import converter_module

    options = inspect.signature(converter_module(key).convert).parameters
    assert list(options) == ["raw_dir", "out_dir", "options"], key
    foreign = tmp_path / "raw"
    (foreign / "something").mkdir(parents=True)
    (foreign / "something" / "notes.txt").write_text("not a dataset")
    with pytest.raises(DatasetError, match="(?s)^(?!.*does not take)"):  # keep_empty is every converter's option
        run_converter(key, foreign, tmp_path / "out", progress=False, keep_empty=True)
    assert not (tmp_path / "out" / "annotations").exists()  # nothing written for a refused folder


# ---------------------------------------------------------------- keep_empty: one rule for every converter


def _png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _scan() -> np.ndarray:
    return (np.add.outer(np.arange(32), np.arange(40)) % 200 + 20).astype(np.uint8)


def _square() -> np.ndarray:
    mask = np.zeros((32, 40), np.uint8)
    mask[8:20, 10:24] = 255
    return mask


def _busi_raw(raw: Path) -> str:
    root = raw / "Dataset_BUSI_with_GT"
    _png(_scan(), root / "benign" / "benign (1).png")
    _png(_square(), root / "benign" / "benign (1)_mask.png")
    _png(_scan(), root / "normal" / "normal (1).png")
    _png(np.zeros((32, 40), np.uint8), root / "normal" / "normal (1)_mask.png")
    return "normal/normal (1).png"


def _hc18_raw(raw: Path) -> str:
    outline = cv2.ellipse(np.zeros((32, 40), np.uint8), (20, 16), (12, 9), 0, 0, 360, 255, 1)
    for name, annotation in (("001_HC", outline), ("002_HC", np.zeros((32, 40), np.uint8))):
        _png(_scan(), raw / "training_set" / f"{name}.png")
        _png(annotation, raw / "training_set" / f"{name}_Annotation.png")
    return "002_HC.png"


def _generic_raw(raw: Path) -> str:
    for name, mask in (("a.png", _square()), ("b.png", np.zeros((32, 40), np.uint8))):
        _png(_scan(), raw / "images" / name)
        _png(mask, raw / "masks" / name)
    return "b.png"


def _mmotu_coco_raw(raw: Path) -> str:
    rle = mask_utils.encode(np.asfortranarray(_square() > 0))
    images = [{"id": n, "file_name": name, "height": 32, "width": 40} for n, name in enumerate(("a.png", "b.png"))]
    annotation = {
        "id": "x",
        "image_id": 0,
        "category_id": 1,
        "iscrowd": 0,
        "segmentation": {"size": [32, 40], "counts": rle["counts"].decode()},
    }
    for image in images:
        _png(_scan(), raw / image["file_name"])
    (raw / "sample.json").write_text(
        json.dumps({"images": images, "annotations": [annotation], "categories": [{"id": 1, "name": "tumour"}]})
    )
    return "b.png"


@pytest.mark.parametrize(
    "key, build", [("busi", _busi_raw), ("hc18", _hc18_raw), ("generic", _generic_raw), ("mmotu_2d", _mmotu_coco_raw)]
)
def test_keep_empty_keeps_images_without_structure(key, build, tmp_path):
    """The converters that once had their own rule (BUSI's keep_normal, HC18 and MMOTU's COCO form
    without one, generic's skip) now exclude a structure-less image and keep it on keep_empty."""
    empty = build(tmp_path / "raw")
    left_out = run_converter(key, tmp_path / "raw", tmp_path / "out", progress=False)
    assert left_out.images == 1 and left_out.empty == [] and left_out.skipped == []
    assert [(p.path, p.reason) for p in left_out.excluded] == [(empty, EMPTY_EXCLUDED)]
    kept = run_converter(key, tmp_path / "raw", tmp_path / "kept", progress=False, keep_empty=True)
    assert kept.images == 2 and kept.empty == [empty] and kept.excluded == []
    assert kept.instances == left_out.instances == 1
    assert validate(kept.coco_path, check_files=True) == []


def test_cli_keep_normal_is_a_deprecated_keep_empty(tmp_path, capsys):
    _busi_raw(tmp_path / "raw")
    for flag, out in (("--keep-normal", "a"), ("--keep-empty", "b")):
        assert cli_main(["data", "convert", "busi", str(tmp_path / "raw"), str(tmp_path / out), flag]) == 0
        captured = capsys.readouterr()
        assert "busi: 2 images" in captured.out and "1 images kept without any instance" in captured.out
        assert ("deprecated" in captured.err) == (flag == "--keep-normal")


# ---------------------------------------------------------------- BUSI


def test_busi_full_set_instances_match_the_masks(converted, data_dir):
    report = converted["busi"]
    root = data_dir / "busi" / "Dataset_BUSI_with_GT"
    expected_images, expected_instances, expected_areas = 0, {}, {}
    counts = {}
    for class_name in ("benign", "malignant", "normal"):
        names = [n for n in os.listdir(root / class_name) if n.endswith(".png") and "_mask" not in n]
        counts[class_name] = len(names)
        if class_name == "normal":
            continue
        for name in names:
            stem = name[: -len(".png")]
            masks = [f for f in os.listdir(root / class_name) if f.startswith(stem + "_mask")]
            parts = [c for f in masks for c in _components(_gray(root / class_name / f) >= 150)]
            expected_images += 1
            expected_instances[f"{class_name}/{name}"] = len(parts)
            expected_areas[f"{class_name}/{name}"] = sorted(int(c.sum()) for c in parts)
    assert counts == {"benign": 437, "malignant": 210, "normal": 133}  # the data README's figures
    assert report.images == expected_images == 647
    assert report.instances == sum(expected_instances.values()) == 682
    assert report.skipped == []
    assert len(report.excluded) == 133 and all(p.path.startswith("normal/") for p in report.excluded)

    coco = load_coco(report.coco_path)
    by_path = {image["source_path"]: image for image in coco["images"]}
    path_of = {image["id"]: image["source_path"] for image in coco["images"]}
    areas: dict[str, list[int]] = {path: [] for path in by_path}
    for annotation in coco["annotations"]:
        areas[path_of[annotation["image_id"]]].append(annotation["area"])
    assert {p: sorted(a) for p, a in areas.items()} == expected_areas
    assert by_path["malignant/malignant (19).png"]["class_labels"] == ["malignant"]
    assert Path(by_path["benign/benign (1).png"]["file_name"]) == root / "benign" / "benign (1).png"
    assert validate(report.coco_path, check_files=True) == []


def test_busi_second_lesion_masks_are_separate_instances(converted, data_dir):
    coco = converted["busi"].coco
    root = data_dir / "busi" / "Dataset_BUSI_with_GT" / "benign"
    assert len(list(root.parent.glob("*/*_mask_1.png"))) == 17  # the data README's second-lesion images
    image = next(i for i in coco["images"] if i["source_path"] == "benign/benign (195).png")
    annotations = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
    sources = sorted({a["source_mask"] for a in annotations})
    assert sources == [
        "benign/benign (195)_mask.png",
        "benign/benign (195)_mask_1.png",
        "benign/benign (195)_mask_2.png",
    ]
    for source in sources:
        expected = _gray(root / Path(source).name) >= 150
        union = np.zeros_like(expected)
        for annotation in (a for a in annotations if a["source_mask"] == source):
            union |= decode_annotation_mask(annotation, image["height"], image["width"])
        np.testing.assert_array_equal(union, expected)


def test_busi_subset_keep_empty_and_byte_copies(data_dir, tmp_path):
    only = ["normal/normal (1).png", "benign/benign (100).png", "malignant/malignant (19).png", "benign/nope.png"]
    options = ConvertOptions(keep_empty=True, progress=False, extra={"only": only})
    report = busi.convert(data_dir / "busi", tmp_path, options)
    assert report.images == 3
    assert report.empty == ["normal/normal (1).png"]
    assert [(p.path, p.reason) for p in report.skipped] == [("benign/nope.png", "requested but not found")]
    coco = load_coco(report.coco_path)
    first = coco["images"][0]
    assert first["file_name"] == "images/busi__00000.png"
    source = data_dir / "busi" / "Dataset_BUSI_with_GT" / first["source_path"]
    assert resolve_image_path(report.coco_path, first["file_name"]).read_bytes() == source.read_bytes()
    assert json.loads((tmp_path / "annotations" / "busi__report.json").read_text())["empty"] == report.empty


def test_busi_bad_pairs_are_skipped_and_named(data_dir, tmp_path):
    src = data_dir / "busi" / "Dataset_BUSI_with_GT" / "benign"
    raw = tmp_path / "raw" / "Dataset_BUSI_with_GT" / "benign"
    raw.mkdir(parents=True)
    for n in (1, 2, 3, 4):
        shutil.copy(src / f"benign ({n}).png", raw)
        shutil.copy(src / f"benign ({n})_mask.png", raw)
    (raw / "benign (1)_mask.png").unlink()  # missing mask
    small = Image.open(src / "benign (2)_mask.png").resize((40, 30))
    small.save(raw / "benign (2)_mask.png")  # size mismatch
    (raw / "benign (3)_mask.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # unreadable
    report = busi.convert(tmp_path / "raw", tmp_path / "out", ConvertOptions(progress=False))
    reasons = {p.path: p.reason for p in report.skipped}
    assert set(reasons) == {"benign/benign (1).png", "benign/benign (2).png", "benign/benign (3).png"}
    assert "no <name>_mask.png" in reasons["benign/benign (1).png"]
    assert "differs" in reasons["benign/benign (2).png"]
    assert "cannot read" in reasons["benign/benign (3).png"]
    assert report.images == 1 and report.instances == len(_components(_gray(src / "benign (4)_mask.png") >= 150))
    assert "skipped 3" in report.summary() and "benign (2).png" in report.summary()


def test_converting_twice_needs_overwrite(data_dir, tmp_path):
    only = ["benign/benign (1).png"]
    run_converter("busi", data_dir / "busi", tmp_path, only=only, progress=False)
    with pytest.raises(OutputExistsError):
        run_converter("busi", data_dir / "busi", tmp_path, only=only, progress=False)
    report = run_converter(
        "busi", data_dir / "busi", tmp_path, only=only, overwrite=True, image_mode="symlink", progress=False
    )
    link = tmp_path / "images" / "busi__00000.png"
    assert link.is_symlink() and report.images == 1
    with pytest.raises(OutputExistsError):
        write_coco(report.coco, report.coco_path)


# ---------------------------------------------------------------- HC18


def _cv2_ellipse_fill(outline: np.ndarray) -> np.ndarray:
    points = np.column_stack(np.nonzero(outline)[::-1]).astype(np.float32)
    (cx, cy), (width, height), angle = cv2.fitEllipse(points)
    canvas = np.zeros(outline.shape, dtype=np.uint8)
    cv2.ellipse(canvas, ((cx, cy), (width, height), angle), 1, thickness=-1)
    return canvas.astype(bool)


def test_hc18_heads_are_filled_outlines(converted, data_dir):
    report = converted["hc18"]
    raw = data_dir / "hc18" / "training_set"
    assert report.images == report.instances == 300 and report.skipped == []
    coco = report.coco
    annotations = {a["image_id"]: a for a in coco["annotations"]}
    assert len(annotations) == 300
    open_outlines = []
    for image in coco["images"]:
        outline = _gray(raw / image["source_path"].replace(".png", "_Annotation.png")) > 127
        head = decode_annotation_mask(annotations[image["id"]], image["height"], image["width"])
        assert image["patient_id"] == image["source_path"].split("_")[0]
        assert not (outline & ~head).any(), "the outline lies inside the head"
        assert head.sum() > 10 * outline.sum()
        outside = ndimage.label(~outline)[0]  # 4-connected background pieces
        border = set(np.unique(np.concatenate([outside[0], outside[-1], outside[:, 0], outside[:, -1]]))) - {0}
        closed_interior = ~outline & ~np.isin(outside, list(border))
        if closed_interior.any():
            np.testing.assert_array_equal(head, closed_interior | outline)
        else:
            open_outlines.append(image["source_path"])
        reference = _cv2_ellipse_fill(outline)
        iou = (head & reference).sum() / (head | reference).sum()
        assert iou > 0.97, (image["source_path"], iou)
    assert open_outlines == ["186_HC.png"]
    assert any("186_HC.png" in note for note in report.notes)


# ---------------------------------------------------------------- MMOTU (COCO input with string ids)


def test_mmotu_sample_is_reemitted_with_the_same_masks(converted, data_dir):
    report = converted["mmotu_2d"]
    original = json.loads((data_dir / "mmotu_sample" / "sample_coco_MMOTU2D.json").read_text())
    assert all(isinstance(a["id"], str) for a in original["annotations"])
    coco = json.loads(report.coco_path.read_text())
    assert report.images == 10 and report.instances == 10
    by_source = {image["source_path"]: image for image in coco["images"]}
    original_images = {image["id"]: image for image in original["images"]}
    for annotation in original["annotations"]:
        source_image = original_images[annotation["image_id"]]
        rle = {"size": annotation["segmentation"]["size"], "counts": annotation["segmentation"]["counts"].encode()}
        expected = mask_utils.decode(rle).astype(bool)
        image = by_source[f"sample_images/{source_image['file_name']}"]
        ours = next(a for a in coco["annotations"] if a["image_id"] == image["id"])
        assert isinstance(ours["id"], int) and ours["source_id"] == annotation["id"]
        assert isinstance(ours["segmentation"]["counts"], str)
        np.testing.assert_array_equal(decode_annotation_mask(ours, image["height"], image["width"]), expected)
        assert ours["area"] == annotation["area"] and ours["bbox"] == annotation["bbox"]
        copied = resolve_image_path(report.coco_path, image["file_name"])
        assert (
            copied.read_bytes()
            == (data_dir / "mmotu_sample" / "sample_images" / source_image["file_name"]).read_bytes()
        )
        assert image["split"] == "test"
    assert validate(report.coco_path, check_files=True) == []


# ---------------------------------------------------------------- COCO variants


def _compressed(mask: np.ndarray) -> bytes:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]


def _variant_file(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A COCO file mixing every supported encoding and id style, and the mask each tag must decode to."""
    height, width = 24, 32
    square = np.zeros((height, width), bool)
    square[4:10, 5:12] = True
    blob = np.zeros((height, width), bool)
    blob[12:20, 3:9] = True
    blob[15, 9:14] = True
    image_ids = [uuid.UUID(int=(1 << 127) + 5).int, "frame-b"]  # a 128-bit id and a string id
    segmentations = {
        "uncompressed": ({"size": [height, width], "counts": _column_major_runs(square)}, square),
        "compressed": ({"size": [height, width], "counts": _compressed(blob).decode()}, blob),
        "bytes-literal": ({"size": str([height, width]), "counts": str(_compressed(square))}, square),
        "list-as-text": ({"size": [height, width], "counts": json.dumps(_column_major_runs(blob))}, blob),
        "polygon": ([[20.0, 2.0, 30.0, 2.0, 30.0, 12.0, 20.0, 12.0]], None),  # reference: pycocotools' COCO API
    }
    annotations = []
    for index, (tag, (segmentation, _)) in enumerate(segmentations.items()):
        annotation = {"image_id": image_ids[index % 2], "category_id": 3, "segmentation": segmentation, "tag": tag}
        if tag != "polygon":  # polygon annotations of the released GIST converter had no id
            annotation["id"] = uuid.UUID(int=(1 << 126) + index).int if index % 2 else f"ann-{index}"
        annotations.append(annotation)
    coco = {
        "images": [
            {"id": image_id, "file_name": f"{n}.png", "height": height, "width": width}
            for n, image_id in enumerate(image_ids)
        ],
        "annotations": annotations,
        "categories": [{"id": 3, "name": "lesion"}],
    }
    path = tmp_path / "variants.json"
    path.write_text(json.dumps(coco))
    return path, {tag: mask for tag, (_, mask) in segmentations.items()}


def _polygon_reference(raw: dict, annotation: dict, tmp_path: Path) -> np.ndarray:
    """The polygon's mask as pycocotools' own COCO API draws it."""
    image_index = next(n for n, image in enumerate(raw["images"]) if image["id"] == annotation["image_id"])
    single = {
        "images": [{**raw["images"][image_index], "id": 0}],
        "annotations": [{**annotation, "id": 1, "image_id": 0}],
        "categories": raw["categories"],
    }
    path = tmp_path / "polygon_only.json"
    path.write_text(json.dumps(single))
    api = COCO(str(path))
    return api.annToMask(api.anns[1]).astype(bool)


def test_load_coco_reads_every_variant(tmp_path):
    path, expected = _variant_file(tmp_path)
    raw = json.loads(path.read_text())
    coco = load_coco(path)
    assert [image["id"] for image in coco["images"]] == [1, 2]
    assert [image["source_id"] for image in coco["images"]] == [raw["images"][0]["id"], "frame-b"]
    assert [a["id"] for a in coco["annotations"]] == [1, 2, 3, 4, 5]
    new_image_id = {image["source_id"]: image["id"] for image in coco["images"]}
    for annotation, original in zip(coco["annotations"], raw["annotations"]):
        assert annotation["image_id"] == new_image_id[original["image_id"]]
        assert isinstance(annotation["segmentation"]["counts"], str) and annotation["segmentation"]["size"] == [24, 32]
        mask = decode_annotation_mask(annotation, 24, 32)
        reference = expected[original["tag"]]
        if reference is None:
            reference = _polygon_reference(raw, original, tmp_path)
        np.testing.assert_array_equal(mask, reference)
        rows, cols = np.nonzero(reference)
        assert annotation["area"] == rows.size
        assert annotation["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1]
    assert validate(coco) == []
    problems = validate(raw)
    assert any("does not fit in int64" in p for p in problems) and any("is a str" in p for p in problems)
    assert any("no id" in p for p in problems) and any("size is written as a string" in p for p in problems)
    assert any("literal inside a string" in p for p in problems)


@settings(max_examples=40, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_rle_forms_agree_with_hand_computed_runs(mask):
    height, width = mask.shape
    from_runs = segmentation_to_rle({"size": [height, width], "counts": _column_major_runs(mask)}, height, width)
    assert from_runs == encode_mask(mask)
    np.testing.assert_array_equal(decode_annotation_mask({"segmentation": from_runs}, height, width), mask)


@pytest.mark.parametrize(
    "segmentation, shape, message",
    [
        ({"size": [5, 5], "counts": [3, 2]}, (5, 5), "sum to 5"),
        ({"size": [6, 5], "counts": [30]}, (5, 5), "differs from the image"),
        ({"size": [20, 30], "counts": "Q25"}, (20, 30), "corrupt"),  # pycocotools returns uninitialised memory
        ({"size": [20, 30], "counts": "ooooo"}, (20, 30), "does not decode"),
        ({"size": [20, 30], "counts": ""}, (20, 30), "empty"),
        ({"size": [20, 30], "counts": "Q2 5"}, (20, 30), "outside the COCO alphabet"),
        ({"size": "20x30", "counts": "Q25"}, (20, 30), "not \\[height, width\\]"),
        ([[1.0, 2.0, 3.0, 4.0]], (5, 5), "even number"),
        ("nonsense", (5, 5), "neither"),
    ],
)
def test_malformed_segmentations_raise(segmentation, shape, message):
    with pytest.raises(DatasetError, match=message):
        decode_annotation_mask({"segmentation": segmentation}, *shape)


def test_load_coco_rejects_ambiguous_files(tmp_path):
    good = {"size": [2, 2], "counts": [4]}
    cases = {
        "duplicate image ids": {
            "images": [{"id": 1, "file_name": "a", "height": 2, "width": 2}] * 2,
            "annotations": [],
            "categories": [],
        },
        "not listed": {
            "images": [{"id": 1, "file_name": "a", "height": 2, "width": 2}],
            "annotations": [{"id": 1, "image_id": 9, "category_id": 1, "segmentation": good}],
            "categories": [{"id": 1, "name": "x"}],
        },
        "unknown category": {
            "images": [{"id": 1, "file_name": "a", "height": 2, "width": 2}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "segmentation": good}],
            "categories": [{"id": 1, "name": "x"}],
        },
    }
    for message, coco in cases.items():
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(coco))
        with pytest.raises(DatasetError, match=message):
            load_coco(path)
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="cannot read JSON"):
        load_coco(path)


def test_validate_reports_each_inconsistency():
    builder = CocoBuilder("toy", ["lesion"])
    image_id = builder.add_image("a.png", 20, 20, source_path="a.png")
    mask = np.zeros((20, 20), bool)
    mask[2:6, 3:9] = True
    mask[12:15, 12:18] = True
    assert builder.add_mask(image_id, mask, 1) == 2
    good = builder.to_dict()
    assert validate(good) == []
    assert [a["area"] for a in good["annotations"]] == [24, 18]
    assert good["annotations"][0]["bbox"] == [3.0, 2.0, 6.0, 4.0]

    def broken(change) -> list[str]:
        coco = builder.to_dict()
        change(coco)
        return validate(coco)

    assert any("used 2 times" in p for p in broken(lambda c: c["annotations"][1].update(id=1)))
    assert any("bbox" in p for p in broken(lambda c: c["annotations"][0].update(bbox=[3, 2, 11, 4])))
    assert any("area 30" in p for p in broken(lambda c: c["annotations"][0].update(area=30)))
    assert any("is not an image" in p for p in broken(lambda c: c["annotations"][0].update(image_id=7)))
    assert any("is not a category" in p for p in broken(lambda c: c["annotations"][0].update(category_id=5)))
    assert any("segmentation" in p for p in broken(lambda c: c["annotations"][0]["segmentation"].update(counts="Q25")))
    empty = encode_mask(np.zeros((20, 20), bool))
    assert any("empty mask" in p for p in broken(lambda c: c["annotations"][0].update(segmentation=empty)))
    assert any("height/width" in p for p in broken(lambda c: c["images"][0].update(height=0)))
    assert any("top-level" in p for p in broken(lambda c: c.pop("categories")))


# ---------------------------------------------------------------- generic converter


def test_generic_converter_pairs_maps_and_reports(tmp_path):
    raw = tmp_path / "raw"
    (raw / "imgs" / "p01").mkdir(parents=True)
    (raw / "imgs" / "p02").mkdir(parents=True)
    (raw / "labels" / "p01").mkdir(parents=True)
    (raw / "labels" / "p02").mkdir(parents=True)
    rng = np.random.default_rng(0)
    expected = {}
    for patient, index in (("p01", 1), ("p01", 2), ("p02", 3)):
        image = rng.integers(0, 4000, (30, 40), dtype=np.uint16)  # 16-bit: must be windowed to 8-bit PNG
        Image.fromarray(image).save(raw / "imgs" / patient / f"scan{index}.tif")
        label = np.zeros((30, 40), np.uint8)
        label[2:8, 2:10] = 1
        label[20:25, 30 - index : 36] = 1
        label[12:18, 15:22] = 2
        label[0, 39] = 7  # a value nobody mapped
        Image.fromarray(label).save(raw / "labels" / patient / f"scan{index}_label.png")
        expected[f"{patient}/scan{index}.tif"] = {value: len(_components(label == value)) for value in (1, 2)}
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(raw / "imgs" / "p02" / "scan4.tif")  # no mask
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(raw / "imgs" / "p02" / "scan5.png")
    Image.fromarray(np.ones((31, 40), np.uint8)).save(raw / "labels" / "p02" / "scan5_label.png")  # wrong size
    report = run_converter(
        "generic",
        raw,
        tmp_path / "out",
        dataset="toy",
        image_dir="imgs",
        mask_dir="labels",
        mask_pattern="{stem}_label.png",
        categories={1: "lesion", 2: "cyst"},
        recursive=True,
        patient_pattern=r"^(p\d+)/",
        progress=False,
    )
    reasons = {p.path: p.reason for p in report.skipped}
    assert set(reasons) == {"p02/scan4.tif", "p02/scan5.png"}
    assert "no mask matching" in reasons["p02/scan4.tif"] and "differs" in reasons["p02/scan5.png"]
    assert any("7: 3 px" in note for note in report.notes)
    coco = load_coco(report.coco_path)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert report.images == 3 and report.instances == sum(sum(v.values()) for v in expected.values())
    for image in coco["images"]:
        got = {1: 0, 2: 0}
        for annotation in coco["annotations"]:
            if annotation["image_id"] == image["id"]:
                got[{"lesion": 1, "cyst": 2}[names[annotation["category_id"]]]] += 1
        assert got == expected[image["source_path"]]
        assert image["patient_id"] == image["source_path"].split("/")[0]
        written = np.asarray(Image.open(resolve_image_path(report.coco_path, image["file_name"])))
        assert written.dtype == np.uint8 and written.shape == (30, 40) and written.max() > 200
    assert validate(report.coco_path, check_files=True) == []


def test_generic_converter_colour_masks_and_shared_folder(tmp_path):
    raw = tmp_path / "raw" / "all"
    raw.mkdir(parents=True)
    image = np.full((16, 16, 3), 90, np.uint8)
    colour = np.zeros((16, 16, 3), np.uint8)
    colour[1:5, 1:5] = (0, 255, 0)
    colour[9:14, 9:14] = (255, 0, 0)
    Image.fromarray(image).save(raw / "a.png")
    Image.fromarray(colour).save(raw / "a_mask.png")
    Image.fromarray((colour[..., 1] > 0).astype(np.uint8) * 255).save(raw / "a_mask_1.png")
    grey = run_converter(
        "generic",
        tmp_path / "raw",
        tmp_path / "grey",
        image_dir="all",
        mask_dir="all",
        mask_pattern="{stem}_mask.png",
        progress=False,
    )
    assert grey.images == 0 and "colour mask" in grey.skipped[0].reason  # colours are never guessed
    report = run_converter(
        "generic",
        tmp_path / "raw",
        tmp_path / "out",
        image_dir="all",
        mask_dir="all",
        mask_pattern="{stem}_mask*.png",
        categories={(0, 255, 0): "benign", (255, 0, 0): "malignant", (255, 255, 255): "benign"},
        progress=False,
    )
    assert report.images == 1  # a_mask*.png files are not taken as images
    coco = load_coco(report.coco_path)
    names = sorted({c["name"] for c in coco["categories"] for a in coco["annotations"] if a["category_id"] == c["id"]})
    assert names == ["benign", "malignant"] and report.instances == 3  # the second (grey) mask adds one benign


# ---------------------------------------------------------------- splits and the whole chain


def _synthetic_patients(n_patients: int, frames: int) -> dict:
    builder = CocoBuilder("toy", ["thing"])
    for patient in range(n_patients):
        for frame in range(frames):
            builder.add_image(
                f"{patient}_{frame}.png", 8, 8, source_path=f"{patient}_{frame}.png", patient_id=f"P{patient}"
            )
    builder.add_image("official.png", 8, 8, source_path="official.png", patient_id="T", split="test")
    return builder.to_dict()


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 60), st.integers(1, 5), st.integers(0, 2**31), st.floats(0.02, 0.5))
def test_patient_split_never_shares_a_patient(n_patients, frames, seed, fraction):
    coco = _synthetic_patients(n_patients, frames)
    result = split_train_val(coco, val_fraction=fraction, seed=seed)
    assert patients_shared(result.parts) == {}
    assert [i["source_path"] for i in result["test"]["images"]] == ["official.png"]
    assert sum(result.counts().values()) == len(coco["images"])
    assert result["train"]["images"], "never every patient in val"
    # about ``fraction`` of the frames in val (as the released 95/5 split: train = int(0.95 n)), whole patients only
    target = n_patients * frames - int(n_patients * frames * (1 - fraction))
    val_frames = len(result["val"]["images"])
    val_patients = {patient_key(i) for i in result["val"]["images"]}
    assert val_frames >= target or len(val_patients) == n_patients - 1
    assert val_frames < target + frames


def test_patient_split_is_seeded():
    coco = _synthetic_patients(200, 3)
    first = split_train_val(coco, seed=1)
    again = split_train_val(coco, seed=1)
    other = split_train_val(coco, seed=2)
    val_ids = lambda r: [i["id"] for i in r["val"]["images"]]  # noqa: E731
    assert val_ids(first) == val_ids(again)
    assert val_ids(first) != val_ids(other)
    assert len(val_ids(first)) == 30  # 5 % of 600 frames, 10 patients of 3


def test_chain_convert_merge_split_agnostic_filter_validate(converted, tmp_path):
    out_root = tmp_path / "built"
    parts = {"train": [], "val": [], "test": []}
    removed_total = 0
    expected_specks = 0
    for key, report in converted.items():
        coco = report.coco
        images = {image["id"]: image for image in coco["images"]}
        for annotation in coco["annotations"]:
            image = images[annotation["image_id"]]
            expected_specks += annotation["area"] < max(16, 1e-4 * image["height"] * image["width"])
        split = split_train_val(coco, seed=7)
        for name, part in split.parts.items():
            filtered, filter_report = filter_small_objects(make_class_agnostic(part))
            removed_total += len(filter_report.removed)
            if filtered["images"]:
                parts[name].append((filtered, report.coco_path.parent.parent))
    assert removed_total == expected_specks == 17  # the 1-7 px specks beside BUSI lesions
    paths = {}
    for name, items in parts.items():
        merged = merge_cocos([c for c, _ in items], image_roots=[r for _, r in items], out_image_root=out_root)
        paths[name] = write_coco(merged, out_root / "annotations" / f"{name}.json")
        assert validate(paths[name], check_files=True) == []
        assert load_coco(paths[name])["categories"] == [{"id": 1, "name": "object", "supercategory": "none"}]
    split_parts = {name: json.loads(path.read_text()) for name, path in paths.items()}
    assert patients_shared(split_parts) == {}
    assert [i["dataset"] for i in split_parts["test"]["images"]] == ["mmotu_2d"] * 10
    hc18_val = [i for i in split_parts["val"]["images"] if i["dataset"] == "hc18"]
    assert len(hc18_val) == 300 - int(300 * 0.95)
    total_images = sum(len(p["images"]) for p in split_parts.values())
    assert total_images == 647 + 300 + 10
    assert sum(len(p["annotations"]) for p in split_parts.values()) == 682 + 300 + 10 - 17
    stats = compute_stats(split_parts.values())
    rows = {(s.dataset, s.organ, s.images) for s in stats}
    assert rows == {("busi", "breast", 647), ("hc18", "fetal head", 300), ("mmotu_2d", "ovary", 10)}
    plot = plot_stats(stats, tmp_path / "stats.png")
    assert Image.open(plot).size[0] > 500


def test_apply_fixed_splits_reports_what_it_cannot_place(converted, data_dir):
    splits = json.loads((data_dir / "splits.json").read_text())
    result = apply_splits(converted["busi"].coco, splits["busi"])
    normal = {split: sum(p.startswith("normal/") for p in paths) for split, paths in splits["busi"].items()}
    assert result.counts() == {split: len(paths) - normal[split] for split, paths in splits["busi"].items()}
    assert {split: len(paths) for split, paths in result.missing.items()} == normal
    assert result.unassigned == []
    with pytest.raises(DatasetError, match="listed in both"):
        apply_splits(converted["hc18"].coco, {"train": ["000_HC.png"], "test": ["000_HC.png"]})


def test_instance_cap_reports_and_keeps_largest():
    builder = CocoBuilder("toy", ["thing"])
    image_id = builder.add_image("a.png", 10, 40, source_path="a.png")
    mask = np.zeros((10, 40), bool)
    for index in range(5):
        mask[1 : 2 + index, 8 * index : 8 * index + 2] = True  # 5 separate instances of areas 2, 4, 6, 8, 10
    builder.add_mask(image_id, mask, 1)
    coco = builder.to_dict()
    kept, report = cap_instances(coco, 3)
    assert len(kept["annotations"]) == 5 and report.over_cap == [
        {"dataset": "toy", "source_path": "a.png", "instances": 5}
    ]
    kept, report = cap_instances(coco, 3, policy="keep_largest")
    assert sorted(a["area"] for a in kept["annotations"]) == [6, 8, 10]
    assert sorted(r["area"] for r in report.removed) == [2, 4]


def test_build_shared_splits_from_the_real_data(data_dir, tmp_path):
    splits = json.loads((data_dir / "splits.json").read_text())
    lesion = {split: [p for p in paths if not p.startswith("normal/")] for split, paths in splits["busi"].items()}
    paths = build_shared_splits(data_dir, tmp_path)
    assert set(paths) == {"train", "val", "test_busi", "test_hc18", "test_mmotu"}
    counts = {name: len(json.loads(path.read_text())["images"]) for name, path in paths.items()}
    assert counts == {
        "train": len(lesion["train"]) + len(splits["hc18"]["train"]),
        "val": len(lesion["val"]) + len(splits["hc18"]["val"]),
        "test_busi": len(lesion["test"]),
        "test_hc18": len(splits["hc18"]["test"]),
        "test_mmotu": 10,
    }
    test_hc18 = json.loads(paths["test_hc18"].read_text())
    assert sorted(i["source_path"] for i in test_hc18["images"]) == sorted(splits["hc18"]["test"])
    assert all(Path(i["file_name"]).is_absolute() and Path(i["file_name"]).is_file() for i in test_hc18["images"])
    before = paths["train"].stat().st_mtime_ns
    with pytest.raises(OutputExistsError):
        build_shared_splits(data_dir, tmp_path)
    assert build_shared_splits(data_dir, tmp_path, if_exists="reuse") == paths
    assert paths["train"].stat().st_mtime_ns == before
    assert (tmp_path / "annotations" / "build_report.json").is_file()


# ---------------------------------------------------------------- command line


def test_cli_data_commands(data_dir, tmp_path, capsys):
    assert cli_main(["data", "list"]) == 0
    assert "43 datasets" in capsys.readouterr().out
    out = tmp_path / "busi"
    assert cli_main(["data", "convert", "busi", str(data_dir / "busi"), str(out), "--in-place", "--limit", "4"]) == 0
    assert "busi: 4 images" in capsys.readouterr().out
    coco_path = out / "annotations" / "busi__coco.json"
    assert cli_main(["data", "validate", str(coco_path), "--check-files"]) == 0
    assert cli_main(["data", "validate", str(data_dir / "mmotu_sample" / "sample_coco_MMOTU2D.json")]) == 1
    assert "is a str" in capsys.readouterr().out
    assert cli_main(["data", "agnostic", str(coco_path), str(coco_path)]) == 1
    assert "new path" in capsys.readouterr().err
    assert cli_main(["data", "agnostic", str(coco_path), str(tmp_path / "agnostic.json")]) == 0
    assert cli_main(["data", "stats", str(tmp_path / "busi")]) == 0
    assert "busi" in capsys.readouterr().out and (tmp_path / "busi" / "stats.png").is_file()
    assert cli_main(["data", "convert", "camus", str(tmp_path), str(tmp_path / "camus")]) == 1
    assert "layout not recognised" in capsys.readouterr().err and not (tmp_path / "camus" / "annotations").exists()
    assert (
        cli_main(["data", "convert", "busi", str(data_dir / "busi"), str(tmp_path / "b2"), "--option", "no_such=1"])
        == 1
    )
    assert "does not take option(s) no_such" in capsys.readouterr().err
    assert (
        cli_main(
            [
                "data",
                "convert",
                "busi",
                str(data_dir / "busi"),
                str(tmp_path / "b2"),
                "--in-place",
                "--limit",
                "2",
                "--option",
                "threshold=250",
            ]
        )
        == 0
    )
    assert "busi: 2 images" in capsys.readouterr().out
    folders = tmp_path / "mine"
    (folders / "images").mkdir(parents=True)
    (folders / "masks").mkdir()
    Image.fromarray(np.full((12, 12), 70, np.uint8)).save(folders / "images" / "x.jpg")
    label = np.zeros((12, 12), np.uint8)
    label[2:5, 2:5], label[8:11, 8:11] = 255, 128
    Image.fromarray(label).save(folders / "masks" / "x.png")
    args = ["data", "convert", "generic", str(folders), str(tmp_path / "mine_out"), "--dataset", "mine"]
    assert cli_main(args + ["--category", "255=lesion", "--category", "128=cyst"]) == 0
    assert "mine: 1 images, 2 instances" in capsys.readouterr().out
    assert (tmp_path / "mine_out" / "images" / "mine__00000.png").is_file()
    assert cli_main(args + ["--category", "oops"]) == 1
    assert "VALUE=NAME" in capsys.readouterr().err


def test_cli_build_converts_every_dataset_found(data_dir, tmp_path, capsys):
    raw = tmp_path / "raw"
    busi_raw = raw / "BUSI" / "Dataset_BUSI_with_GT" / "malignant"
    busi_raw.mkdir(parents=True)
    for n in range(1, 9):
        for suffix in ("", "_mask"):
            shutil.copy(
                data_dir / "busi" / "Dataset_BUSI_with_GT" / "malignant" / f"malignant ({n}){suffix}.png", busi_raw
            )
    (raw / "hc18").mkdir()
    for n in range(12):
        for suffix in ("", "_Annotation"):
            shutil.copy(data_dir / "hc18" / "training_set" / f"{n:03d}_HC{suffix}.png", raw / "hc18")
    (raw / "mmotu_sample").symlink_to(data_dir / "mmotu_sample", target_is_directory=True)
    (raw / "notes").mkdir()  # not a dataset: ignored
    splits = tmp_path / "splits.json"
    hc18_lists = {
        "train": [f"{n:03d}_HC.png" for n in range(8)],
        "val": ["008_HC.png"],
        "test": ["009_HC.png", "010_HC.png"],
    }
    splits.write_text(json.dumps({"HC18": hc18_lists}))  # a section may use any spelling of the dataset
    out = tmp_path / "out"
    assert cli_main(["data", "build", str(raw), str(out), "--splits", str(splits), "--link", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "hc18: 1 converted images are in no split list" in printed  # 011_HC.png
    files = {
        p.name: json.loads(p.read_text()) for p in (out / "annotations").glob("*.json") if p.name != "build_report.json"
    }
    assert set(files) == {"train.json", "val.json", "test.json", "test.hc18.json", "test.mmotu_2d.json"}
    sources = lambda name, ds: sorted(i["source_path"] for i in files[name]["images"] if i["dataset"] == ds)  # noqa: E731
    assert sources("train.json", "hc18") == [f"{n:03d}_HC.png" for n in range(8)]
    assert sources("test.json", "hc18") == ["009_HC.png", "010_HC.png"]
    assert (
        len(sources("train.json", "busi")) + len(sources("val.json", "busi")) == 8
        and len(sources("val.json", "busi")) == 1
    )
    assert len(files["test.mmotu_2d.json"]["images"]) == 10
    for name in files:
        assert validate(out / "annotations" / name, check_files=True) == []
    assert files["train.json"]["images"][0]["file_name"].startswith(("busi/images/", "hc18/images/"))
    assert (out / "stats.png").is_file()
    assert cli_main(["data", "build", str(raw), str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
