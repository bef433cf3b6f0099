"""MMOTU-2D ovarian tumours (Zhao et al. 2022) -> COCO, from the raw release or the UltraSam COCO form.

**Raw release** (``OTU_2d/``, detected by its ``images/`` + ``annotations/`` folders and
``train_cls.txt``/``val_cls.txt``): ``images/<n>.JPG``, ``annotations/<n>_binary.PNG`` (binary
mask) and ``annotations/<n>.PNG`` (colour mask), and ``<split>_cls.txt`` lines ``<n>.JPG <class>``
with the class index 0-7 into :data:`CLASSES`. As in the released converter the image's tumour
type is the category of its whole foreground (one instance per connected component) and
``val_cls.txt`` is the test split (``split: "test"``, ``train_cls.txt`` -> ``"train"``); the type
is also kept as the image-level class label. The binary mask is read (> 0), the colour mask
(any channel > 0) only when it is missing. Fixed from the released converter: an image listed in
neither cls file is skipped and named (the released loop reused the previous image's class and
split); images without foreground are excluded unless ``keep_empty=True``.

**UltraSam COCO form**: a folder with one COCO JSON (e.g. ``sample_coco_MMOTU2D.json``: string
annotation ids, compressed RLE, ``size`` written as a string) and its images (in the folder itself
or in a sub-folder such as ``sample_images/``). The file is re-emitted in this project's form:
integer ids, RLE ``counts`` as str with ``size`` [h, w], ``bbox``/``area`` recomputed from the RLE
(given values that disagree are reported), ``source_path`` = the original ``file_name``. Every
image is from the MMOTU-2D *test* split (``split: "test"``), as the file names
``test.MMOTU_2d__*`` say. Annotations are kept as given (one object each), not re-split into
components; its categories are the file's (the shared sample is class-agnostic). As everywhere,
images without any annotated structure are excluded unless ``keep_empty=True``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from ultrasam_training.data.coco import CocoBuilder, normalise_coco
from ultrasam_training.data.convert.output import DatasetOutput
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import (
    EMPTY_EXCLUDED,
    Loaded,
    Sample,
    convert_samples,
    natural_key,
    read_image_file,
)
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import image_size, read_array
from ultrasam_training.data.jsonio import read_json
from ultrasam_training.data.masks import rle_area, rle_bbox
from ultrasam_training.data.report import ConversionReport

DATASET = "mmotu_2d"
URL = "https://github.com/cv516Buaa/MMOTU_DS2Net"
#: tumour types in class-index order of the cls files (the raw release's categories)
CLASSES = (
    "chocolate_cyst",
    "serous_cystadenoma",
    "teratoma",
    "thera_cell_tumor",
    "simple_cyst",
    "normal_ovary",
    "mucinous_cystadenoma",
    "high_grade_serous",
)
CATEGORIES = CLASSES
CLS_FILES = {"train_cls.txt": "train", "val_cls.txt": "test"}
RAW_EXPECTED = "OTU_2d/{images/<n>.JPG, annotations/<n>_binary.PNG or <n>.PNG, train_cls.txt, val_cls.txt}"


def find_raw_root(raw_dir: str | Path) -> Path | None:
    """The raw release folder (``raw_dir`` or its ``OTU_2d``), or None when ``raw_dir`` is not one."""
    raw_dir = Path(raw_dir)
    for candidate in (raw_dir, raw_dir / "OTU_2d", raw_dir / "OTU_2d" / "OTU_2d"):
        if (
            (candidate / "images").is_dir()
            and (candidate / "annotations").is_dir()
            and any((candidate / name).is_file() for name in CLS_FILES)
        ):
            return candidate
    return None


def _class_lists(root: Path, report: ConversionReport) -> dict[str, tuple[str, str | None]]:
    """image file name -> (split, tumour type or None when the index is not 0-7), from the cls files."""
    listed: dict[str, tuple[str, str | None]] = {}
    for name, split in CLS_FILES.items():
        path = root / name
        if not path.is_file():
            report.note(f"{name} not found: its images are not converted")
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
            fields = line.split()
            if len(fields) != 2:
                if fields:
                    report.note(f"{name} line {number}: {line.strip()!r} is not '<image> <class>', left out")
                continue
            index = fields[1]
            label = CLASSES[int(index)] if index.isdigit() and int(index) < len(CLASSES) else None
            if fields[0] in listed:
                report.note(f"{fields[0]} is listed twice; the {name} entry wins")
            listed[fields[0]] = (split, label)
    return listed


def _raw_mask(annotations: dict[str, Path], stem: str) -> np.ndarray:
    for name in (f"{stem}_binary.png".lower(), f"{stem}.png".lower()):
        if name in annotations:
            mask = read_array(annotations[name])
            return (mask[..., :3] > 0).any(axis=-1) if mask.ndim == 3 else mask > 0
    raise DatasetError(f"no annotations/{stem}_binary.PNG or annotations/{stem}.PNG")


def _raw_load(image: Path, annotations: dict[str, Path], label: str) -> Loaded:
    return Loaded(read_image_file(image), [(label, _raw_mask(annotations, image.stem))])


def _raw_samples(root: Path, report: ConversionReport) -> Iterator[Sample]:
    listed = _class_lists(root, report)
    images = {p.name.lower(): p for p in (root / "images").iterdir() if p.is_file()}
    annotations = {p.name.lower(): p for p in (root / "annotations").iterdir() if p.is_file()}
    listed_names = {name.lower() for name in listed}
    for name in sorted(set(images) - listed_names, key=natural_key):
        report.skip(f"images/{images[name].name}", "not listed in train_cls.txt or val_cls.txt (no class, no split)")
    for name in sorted(listed, key=natural_key):
        split, label = listed[name]
        source = f"images/{name}"
        image = images.get(name.lower())
        if image is None:
            report.skip(source, "listed in a cls file but not in images/")
        elif label is None:
            report.skip(source, "class index in the cls file is not 0-7")
        else:
            yield Sample(source, partial(_raw_load, image, annotations, label), class_labels=[label], split=split)


def convert_raw(root: Path, out_dir: str | Path, options: ConvertOptions) -> ConversionReport:
    """Convert the raw OTU_2d release at ``root`` (see the module docstring)."""
    report = ConversionReport(DATASET)
    return convert_samples(
        DATASET,
        CATEGORIES,
        _raw_samples(root, report),
        out_dir,
        options,
        description="MMOTU-2D ovarian tumours (OTU_2d)",
        url=URL,
        report=report,
    )


def find_coco_file(raw_dir: str | Path) -> Path:
    """The single COCO JSON in ``raw_dir`` (a file path is accepted as is)."""
    raw_dir = Path(raw_dir)
    if raw_dir.is_file():
        return raw_dir
    candidates = sorted(p for p in raw_dir.glob("*.json") if p.is_file())
    if len(candidates) != 1:
        raise DatasetError(
            f"{raw_dir}: expected exactly one COCO .json (found {len(candidates)}) "
            f"or the raw release layout {RAW_EXPECTED}"
        )
    return candidates[0]


def _find_image(folder: Path, file_name: str) -> Path | None:
    direct = folder / file_name
    if direct.is_file():
        return direct
    matches = sorted(folder.glob(f"*/{Path(file_name).name}"))
    return matches[0] if matches else None


def _annotations_to_keep(image: dict, annotations: list[dict], report: ConversionReport) -> list[dict]:
    """The image's annotations with a non-empty mask; the others are skipped and named."""
    kept = []
    for annotation in annotations:
        if rle_area(annotation["segmentation"]) == 0:
            report.skip(f"{image['file_name']} annotation {_source_id(annotation)}", "empty mask")
        else:
            kept.append(annotation)
    return kept


def _image_file(folder: Path, image: dict, report: ConversionReport) -> Path | None:
    """The image file of a COCO entry if it exists and has the size the entry says; else None, reported."""
    source = _find_image(folder, image["file_name"])
    if source is None:
        report.skip(image["file_name"], "image file not found next to the COCO file")
        return None
    try:
        height, width = image_size(source)
    except DatasetError as exc:
        report.skip(image["file_name"], str(exc))
        return None
    if (height, width) != (image["height"], image["width"]):
        report.skip(image["file_name"], f"file is {width}x{height}, COCO says {image['width']}x{image['height']}")
        return None
    return source


def _source_id(annotation: dict) -> int | str:
    """The id the annotation had in the released file (kept as ``source_id``)."""
    return annotation.get("source_id", annotation["id"])


def _add_annotations(
    builder: CocoBuilder, image_id: int, image: dict, annotations: list[dict], report: ConversionReport
) -> None:
    """Copy each annotation as one instance, its bbox and area recomputed from the RLE."""
    for annotation in annotations:
        rle = annotation["segmentation"]
        given_bbox, given_area = annotation.get("bbox"), annotation.get("area")
        if given_area != rle_area(rle) or [float(v) for v in given_bbox] != rle_bbox(rle):
            report.note(f"{image['file_name']}: given bbox/area disagree with the mask; recomputed")
        builder.add_rle(image_id, rle, annotation["category_id"], source_id=_source_id(annotation))
        report.instances += 1


def convert_coco_form(
    raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions, split: str | None
) -> ConversionReport:
    """Re-emit a COCO-form MMOTU folder (see the module docstring) with ``split`` on every image."""
    coco_file = find_coco_file(raw_dir)
    folder = coco_file.parent
    coco = normalise_coco(read_json(coco_file), source=str(coco_file))
    output = DatasetOutput(DATASET, out_dir, options)
    categories = {c["id"]: c["name"] for c in coco["categories"]}
    builder = CocoBuilder(DATASET, categories, description="MMOTU-2D (UltraSam COCO release)", url=URL)
    report = ConversionReport(DATASET)
    by_image: dict[int, list[dict]] = {}
    for annotation in coco["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    for image in tqdm(coco["images"], desc=DATASET, unit="img", disable=not options.progress):
        if options.limit is not None and report.images >= options.limit:
            break
        source = _image_file(folder, image, report)
        if source is None:
            continue
        annotations = _annotations_to_keep(image, by_image.get(image["id"], []), report)
        if not annotations and not options.keep_empty:
            report.exclude(image["file_name"], EMPTY_EXCLUDED)
            continue
        file_name = output.place_image_or_skip(source, report, image["file_name"])
        if file_name is None:
            continue
        source_path = source.relative_to(folder).as_posix()
        image_id = builder.add_image(file_name, image["height"], image["width"], source_path=source_path, split=split)
        _add_annotations(builder, image_id, image, annotations, report)
        if not annotations:
            report.empty.append(image["file_name"])
        report.images += 1
    output.finish(builder.to_dict(), report)
    return report


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"split": "test"}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert the raw OTU_2d release, or re-emit a COCO-form MMOTU folder, into ``out_dir``.

    ``split`` is recorded for the COCO form only (the raw release takes it from the cls files).
    """
    split = options.extras(OPTIONS, DATASET)["split"]
    raw_root = find_raw_root(raw_dir)
    if raw_root is not None:
        return convert_raw(raw_root, out_dir, options)
    return convert_coco_form(raw_dir, out_dir, options, split)
