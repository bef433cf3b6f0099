"""Hostile COCO files and raw data fed to ``ultrasam evaluate``, ``data validate`` and ``data convert``.

Each must end in one clear message and a non-zero exit (or, for ``convert``, skip and name the bad
sample and convert the rest), never a traceback, a segfault or half-written output. Every input is
built by the test; cases that used to kill the process inside pycocotools run in a subprocess, so a
regression fails the test instead of taking pytest down.
"""

from __future__ import annotations

import csv
import io
import json
import math
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from ultrasam.cli import main
from ultrasam_training.data.limits import MAX_IMAGE_PIXELS
from ultrasam_training.data.masks import compressed_runs
from ultrasam_training.data.validate import validate
from ultrasam_training.evaluation.reports import neutralise_cell

SUBPROCESS_TIMEOUT_S = 60
SHAPE = (20, 30)  # height, width of the synthetic images
BOX = (5, 4, 10, 8)  # x, y, w, h of the one square instance per image


# --------------------------------------------------------------------------- builders
def _square_rle(shape: tuple[int, int] = SHAPE, box: tuple[int, int, int, int] = BOX) -> dict:
    x, y, w, h = box
    mask = np.zeros(shape, np.uint8)
    mask[y : y + h, x : x + w] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": list(shape), "counts": rle["counts"].decode("ascii")}


def _annotation(ann_id: Any = 1, image_id: Any = 1, **changes: Any) -> dict:
    annotation = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": 0,
        "segmentation": _square_rle(),
        "area": BOX[2] * BOX[3],
        "bbox": list(BOX),
    }
    annotation.update(changes)
    return annotation


def _coco(images: list[dict] | None = None, annotations: list[dict] | None = None) -> dict:
    images = (
        images if images is not None else [{"id": 1, "file_name": "im1.png", "height": SHAPE[0], "width": SHAPE[1]}]
    )
    annotations = annotations if annotations is not None else [_annotation()]
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "object"}]}


def _write_dataset(root: Path, coco: dict, name: str = "hostile") -> Path:
    """``root/annotations/<name>.json`` with every named image written under ``root`` (the image root)."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    pixels = np.full(SHAPE, 40, np.uint8)
    for image in coco["images"]:
        file_name = image.get("file_name")
        if isinstance(file_name, str):
            Image.fromarray(pixels).save(root / file_name, format="PNG")
    path = root / "annotations" / f"{name}.json"
    path.write_text(json.dumps(coco))  # NaN/Infinity are written as the JSON extensions Python reads back
    return path


def _evaluate(coco_path: Path, out: Path) -> int:
    return main(["evaluate", "--model", "filled-box", "--coco", str(coco_path), "--out", str(out), "--quiet"])


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    """The ``ultrasam`` console script in a child process: a segfault there is a failed test, not a dead pytest."""
    return subprocess.run(
        [sys.executable, "-m", "ultrasam.cli", *args], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S
    )


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A small valid PNG whose IHDR is patched to declare ``width`` x ``height`` (CRC fixed): a decompression bomb."""
    data = bytearray(_png_bytes(np.zeros((8, 8), np.uint8)))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# --------------------------------------------------------------------------- 1. huge declared sizes
def _huge_image_coco(root: Path) -> Path:
    """300 bytes declaring a 10^6 x 10^6 image whose 3-character RLE used to SIGSEGV pycocotools' decoder."""
    huge = 1_000_000
    coco = _coco(
        [{"id": 1, "file_name": "im1.png", "height": huge, "width": huge}],
        [_annotation(segmentation={"size": [huge, huge], "counts": "ab0"})],
    )
    path = _write_dataset(root, coco)
    assert path.stat().st_size < 400
    return path


def test_validate_reports_a_huge_declared_image_size(tmp_path):
    checked = _run_cli("data", "validate", str(_huge_image_coco(tmp_path / "data")))
    assert checked.returncode == 1, checked.stderr[-2000:]
    assert "pixel cap" in checked.stdout and "1000000x1000000" in checked.stdout
    assert "Traceback" not in checked.stderr


def test_evaluate_refuses_a_huge_declared_image_size(tmp_path):
    out = tmp_path / "results"
    evaluated = _run_cli(
        "evaluate",
        "--model",
        "filled-box",
        "--coco",
        str(_huge_image_coco(tmp_path / "data")),
        "--out",
        str(out),
        "--quiet",
    )
    assert evaluated.returncode == 1, evaluated.stderr[-2000:]
    assert "ultrasam evaluate: error:" in evaluated.stderr and "pixel cap" in evaluated.stderr
    assert "Traceback" not in evaluated.stderr
    assert not out.exists()


_HOSTILE_SEGMENTATIONS = {
    # polygon vertices at 1e9 px: pycocotools' frPyObjects segfaults even on a 20 x 30 image
    "far vertex": ([[0.0, 0.0, 1e9, 0.0, 1e9, 1e9]], "outside"),
    # a zig-zag outline of 200 x 30 px steps: pycocotools would allocate per 1/5 px step
    "long outline": ([[0.0, 0.0, 29.0, 19.0] * 100], "outline"),
    # runs summing past height x width: rleDecode writes past its buffer
    "runs past the end": ({"size": list(SHAPE), "counts": _square_rle((2 * SHAPE[0], SHAPE[1]))["counts"]}, "corrupt"),
    # a number that never ends: rleFrString reads past the string
    "unterminated": ({"size": list(SHAPE), "counts": "0ooo"}, "does not decode"),
}


def test_hostile_segmentations_are_reported_not_crashing(tmp_path):
    """Validate and load each hostile segmentation in one child process; each must be a clean problem."""
    paths = {}
    for tag, (segmentation, _) in _HOSTILE_SEGMENTATIONS.items():
        coco = _coco(annotations=[_annotation(segmentation=segmentation)])
        paths[tag] = str(_write_dataset(tmp_path / tag.replace(" ", "_"), coco))
    script = (
        "import json, sys\n"
        "from ultrasam_training.data.coco import load_coco\n"
        "from ultrasam_training.data.errors import DatasetError\n"
        "from ultrasam_training.data.validate import validate\n"
        "out = {}\n"
        "for tag, path in json.loads(sys.argv[1]).items():\n"
        "    try:\n"
        "        load_coco(path); error = None\n"
        "    except DatasetError as exc:\n"
        "        error = str(exc)\n"
        "    out[tag] = {'validate': validate(path), 'load': error}\n"
        "print(json.dumps(out))\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script, json.dumps(paths)], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S
    )
    assert child.returncode == 0, child.stderr[-2000:]
    results = json.loads(child.stdout)
    for tag, (_, message) in _HOSTILE_SEGMENTATIONS.items():
        assert results[tag]["load"] is not None and message in results[tag]["load"], (tag, results[tag])
        assert any(message in problem for problem in results[tag]["validate"]), (tag, results[tag])


def test_compressed_runs_agree_with_pycocotools():
    """The pure-numpy decoder that guards pycocotools must read its strings exactly (random masks)."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        height, width = (int(v) for v in rng.integers(1, 40, 2))
        mask = rng.random((height, width)) < rng.random()
        counts = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")
        flat = mask.flatten(order="F")
        edges = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
        expected = np.diff(np.concatenate(([0], edges, [flat.size])))
        if flat[0]:
            expected = np.concatenate(([0], expected))  # COCO runs start with background
        assert compressed_runs(counts).tolist() == expected.tolist()
    assert MAX_IMAGE_PIXELS == 150_000_000  # documented cap; a change must update the docs


# --------------------------------------------------------------------------- 2. non-finite or empty bbox
@pytest.mark.parametrize(
    "bbox, problem",
    [
        ([math.nan, 4, 10, 8], "non-finite"),
        ([5, 4, math.inf, 8], "non-finite"),
        ([5, 4, -10, 8], "no positive width"),
    ],
)
def test_bad_bbox_is_reported_by_validate_and_refused_by_evaluate(tmp_path, capsys, bbox, problem):
    path = _write_dataset(tmp_path / "data", _coco(annotations=[_annotation(bbox=bbox)]))
    assert any(problem in p for p in validate(path))
    assert main(["data", "validate", str(path)]) == 1
    assert problem in capsys.readouterr().out

    out = tmp_path / "results"
    assert _evaluate(path, out) == 1
    err = capsys.readouterr().err
    assert "ultrasam evaluate: error:" in err and "annotation 1: bbox" in err and "finite" in err
    assert not out.exists()


def test_nan_area_is_reported_and_refused(tmp_path, capsys):
    path = _write_dataset(tmp_path / "data", _coco(annotations=[_annotation(area=math.nan)]))
    assert any("not a finite number" in p for p in validate(path))
    assert _evaluate(path, tmp_path / "results") == 1
    assert "area nan" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


# --------------------------------------------------------------------------- 3. duplicate annotation ids
def test_duplicate_annotation_ids_are_refused_by_evaluate(tmp_path, capsys):
    images = [{"id": n, "file_name": f"im{n}.png", "height": SHAPE[0], "width": SHAPE[1]} for n in (1, 2)]
    path = _write_dataset(tmp_path / "data", _coco(images, [_annotation(7, 1), _annotation(7, 2)]))
    assert any("annotation id 7 used 2 times" in p for p in validate(path))
    out = tmp_path / "results"
    assert _evaluate(path, out) == 1
    err = capsys.readouterr().err
    assert "annotation id 7 is used more than once" in err
    assert not out.exists()


# --------------------------------------------------------------------------- 4. ids of the wrong type
@pytest.mark.parametrize(
    "where, change, message",
    [
        (
            "image id",
            lambda c: (c["images"][0].update(id={"n": 1}), c["annotations"][0].update(image_id={"n": 1})),
            "image id {'n': 1} is a dict; ids must be integers or strings",
        ),
        ("annotation id", lambda c: c["annotations"][0].update(id=[1]), "annotation id [1] is a list; ids must be"),
        ("image_id", lambda c: c["annotations"][0].update(image_id=[1]), "image_id [1] is a list; ids must be"),
        ("category_id", lambda c: c["annotations"][0].update(category_id={"c": 1}), "category id {'c': 1} is not"),
    ],
)
def test_ids_that_are_dicts_or_lists_are_refused(tmp_path, capsys, where, change, message):
    coco = _coco()
    change(coco)
    path = _write_dataset(tmp_path / "data", coco)
    for flags in ([], ["--allow-any-ids"]):
        assert main(["data", "validate", *flags, str(path)]) == 1, where
    validated = capsys.readouterr()
    assert f"{path}: " in validated.err and "problems" in validated.err
    out = tmp_path / "results"
    assert _evaluate(path, out) == 1
    err = capsys.readouterr().err
    assert "ultrasam evaluate: error:" in err and message in err, err
    assert not out.exists()


# --------------------------------------------------------------------------- 5. CSV formula injection
FORMULA_NAMES = ("=1+2.png", "+SUM(A1).png", "-2+3.png", "@cmd.png", "\tTAB.png", "\rCR.png")


def test_csv_reports_neutralise_formula_cells(tmp_path):
    images = [
        {"id": n, "file_name": name, "height": SHAPE[0], "width": SHAPE[1]}
        for n, name in enumerate(FORMULA_NAMES, start=1)
    ]
    annotations = [_annotation(n, n) for n in range(1, len(FORMULA_NAMES) + 1)]
    path = _write_dataset(tmp_path / "data", _coco(images, annotations), name="=HYPERLINK(1)")
    out = tmp_path / "results"
    assert _evaluate(path, out) == 0
    rows = list(csv.DictReader((out / "instances" / "HYPERLINK_1" / "filled-box__box__none.csv").open(newline="")))
    assert [row["file_name"] for row in rows] == ["'" + name for name in FORMULA_NAMES]
    assert all(float(row["dice"]) == 1.0 for row in rows)  # the numbers stay numbers
    for table in (out / "summary.csv", out / "tables" / "HYPERLINK_1.csv"):
        (summary,) = list(csv.DictReader(table.open(newline="")))
        assert summary["dataset"] == "'=HYPERLINK(1)" and summary["refine"] == "-"
    for csv_file in out.rglob("*.csv"):
        for row in csv.reader(csv_file.open(newline="")):
            assert not any(cell.startswith(("=", "+", "@", "\t", "\r")) for cell in row), (csv_file, row)


def test_neutralise_cell_leaves_numbers_alone():
    assert neutralise_cell("=cmd|' /C calc'!A0") == "'=cmd|' /C calc'!A0"
    assert neutralise_cell("-1+cmd") == "'-1+cmd"
    assert [neutralise_cell(v) for v in ("-0.5", "+3", "-", -0.5, 7, None, "a=b")] == [
        "-0.5",
        "+3",
        "-",
        -0.5,
        7,
        None,
        "a=b",
    ]


# --------------------------------------------------------------------------- 6. decompression bombs in convert
def _raw_pairs(images_dir: Path, masks_dir: Path, names: tuple[str, ...]) -> None:
    images_dir.mkdir(parents=True)
    masks_dir.mkdir(parents=True)
    mask = np.zeros(SHAPE, np.uint8)
    mask[4:12, 5:15] = 255
    for name in names:
        (images_dir / name).write_bytes(_png_bytes(np.full(SHAPE, 90, np.uint8)))
        (masks_dir / name).write_bytes(_png_bytes(mask))


def _converted(out: Path, dataset: str) -> dict:
    return json.loads((out / "annotations" / f"{dataset}__coco.json").read_text())


@pytest.mark.parametrize(
    "converter, image_dir, mask_dir",
    [
        ("generic", "images", "masks"),  # its own loop
        ("tnscui", "image", "mask"),  # the shared loop of convert/samples.py
    ],
)
def test_decompression_bomb_is_skipped_and_named(tmp_path, capsys, converter, image_dir, mask_dir):
    raw, out = tmp_path / "raw", tmp_path / "out"
    _raw_pairs(raw / image_dir, raw / mask_dir, ("1.png", "2.png", "3.png"))
    (raw / image_dir / "2.png").write_bytes(_png_declaring(60_000, 60_000))
    assert main(["data", "convert", converter, str(raw), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped 1:" in printed and "2.png" in printed and "decompression bomb" in printed
    coco = _converted(out, converter)
    assert sorted(image["source_path"].rsplit("/", 1)[-1] for image in coco["images"]) == ["1.png", "3.png"]
    assert len(list((out / "images").iterdir())) == 2


def test_header_just_over_the_cap_is_skipped_before_decoding(tmp_path, capsys):
    """Below Pillow's own bomb error (about 1.8e8 px) but over ours: our cap names it, nothing is decoded."""
    raw, out = tmp_path / "raw", tmp_path / "out"
    _raw_pairs(raw / "images", raw / "masks", ("1.png", "2.png"))
    side = math.isqrt(MAX_IMAGE_PIXELS) + 1
    (raw / "images" / "1.png").write_bytes(_png_declaring(side, side))
    with pytest.warns(Image.DecompressionBombWarning):
        assert main(["data", "convert", "generic", str(raw), str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"1.png: header declares {side}x{side}" in printed and "pixel cap" in printed
    assert [image["source_path"] for image in _converted(out, "generic")["images"]] == ["2.png"]


@pytest.mark.parametrize(
    "converter, image_dir, mask_dir", [("generic", "images", "masks"), ("tnscui", "image", "mask")]
)
def test_truncated_images_are_skipped_and_named(tmp_path, capsys, converter, image_dir, mask_dir):
    """A truncated 8-bit PNG (copied byte for byte) and a truncated 16-bit one (decoded to be rewritten)."""
    raw, out = tmp_path / "raw", tmp_path / "out"
    _raw_pairs(raw / image_dir, raw / mask_dir, ("1.png", "2.png", "3.png"))
    eight_bit = (raw / image_dir / "1.png").read_bytes()
    (raw / image_dir / "1.png").write_bytes(eight_bit[: len(eight_bit) - 20])
    sixteen_bit = _png_bytes(np.random.default_rng(0).integers(0, 60_000, SHAPE, dtype=np.uint16))
    (raw / image_dir / "2.png").write_bytes(sixteen_bit[: len(sixteen_bit) // 2])
    assert main(["data", "convert", converter, str(raw), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped 2:" in printed and "1.png" in printed and "2.png" in printed
    assert [image["source_path"].rsplit("/", 1)[-1] for image in _converted(out, converter)["images"]] == ["3.png"]
    assert len(list((out / "images").iterdir())) == 1


def test_volume_header_over_the_cap_is_refused_before_decoding(tmp_path):
    """A 60-byte MetaImage header declaring 60000^3 voxels: refused from the header, nothing allocated."""
    from ultrasam_training.data.convert.volumes import read_volume
    from ultrasam_training.data.errors import DatasetError

    path = tmp_path / "bomb.mha"
    path.write_bytes(
        b"ObjectType = Image\nNDims = 3\nDimSize = 60000 60000 60000\n"
        b"ElementType = MET_UCHAR\nElementDataFile = LOCAL\n" + bytes(64)
    )
    with pytest.raises(DatasetError, match="header declares 60000x60000x60000 .* not decoded"):
        read_volume(path)
