"""GIST514-DB, endoscopic ultrasound of gastric submucosal tumours (github.com/howardchina/query2) -> COCO.

Raw layout (the published zip extracted)::

    usd514_jpeg_roi/images/<name>.jpg
    usd514_jpeg_roi/annotations/{train,val}_anno_crop_split_<k>.json   # COCO, polygon segmentations

As the released converter, fold ``k = 0`` (``fold=``) is used: its train file gives
``split="train"``, its val file ``split="test"`` (the released ``test.GIST514-DB`` file).
Polygons are rasterised with pycocotools ``frPyObjects``; the categories are ``lmym``
(leiomyoma) and ``gist``, matched by the file's category names (ids 1/2 when names differ, as
the released converter assumed). Where the released converter wrote one id-less annotation per
polygon, each connected component is one instance here. The image-level label is the tumour
type(s) annotated. Images listed in the JSON but absent are skipped; annotations of unknown
categories and images listed in neither file are reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ultrasam_training.data.convert._polygons import coco_segmentation_mask, read_json_file
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples, natural_key, read_image_file
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import image_size
from ultrasam_training.data.report import ConversionReport

DATASET = "gist514_db"
CATEGORIES = ("lmym", "gist")
URL = "https://github.com/howardchina/query2"
SPLIT_FILES = (("train", "train_anno_crop_split_{fold}.json"), ("test", "val_anno_crop_split_{fold}.json"))


def find_root(raw_dir: str | Path) -> Path:
    """``raw_dir`` or ``raw_dir/usd514_jpeg_roi``: the folder with ``images/`` and ``annotations/``."""
    raw_dir = Path(raw_dir)
    for candidate in (raw_dir, raw_dir / "usd514_jpeg_roi"):
        if (candidate / "images").is_dir() and (candidate / "annotations").is_dir():
            return candidate
    raise DatasetError(f"{raw_dir}: expected usd514_jpeg_roi/images/ and usd514_jpeg_roi/annotations/*.json")


def _category_names(coco: dict, source: str, report: ConversionReport) -> dict[int, str]:
    names = {c.get("id"): str(c.get("name", "")).strip().lower() for c in coco.get("categories", [])}
    mapping = {cid: name for cid, name in names.items() if name in CATEGORIES}
    if not mapping:
        mapping = {index + 1: name for index, name in enumerate(CATEGORIES)}
        report.note(f"{source}: category names {sorted(names.values())} unknown; ids 1=lmym, 2=gist assumed")
    return mapping


def _load(
    image: Path, entry: dict, annotations: list[dict], mapping: dict[int, str], source: str, report: ConversionReport
) -> Loaded:
    read_image_file(image)
    height, width = image_size(image)
    declared = (entry.get("height"), entry.get("width"))
    if None not in declared and tuple(declared) != (height, width):
        raise DatasetError(f"JSON says {declared[1]}x{declared[0]}, the image is {width}x{height}")
    masks, unknown = [], []
    for annotation in annotations:
        name = mapping.get(annotation.get("category_id"))
        if name is None:
            unknown.append(str(annotation.get("category_id")))
            continue
        masks.append((name, coco_segmentation_mask(annotation.get("segmentation"), height, width)))
    if unknown:
        report.note(f"{source}: annotations of unknown category id(s) {', '.join(unknown)} left out")
    return Loaded(image, masks)


def _samples(root: Path, fold: int, report: ConversionReport):
    listed: set[str] = set()
    for split, pattern in SPLIT_FILES:
        json_path = root / "annotations" / pattern.format(fold=fold)
        if not json_path.is_file():
            report.note(f"annotations/{json_path.name} is missing: no {split} images")
            continue
        coco = read_json_file(json_path)
        mapping = _category_names(coco, json_path.name, report)
        by_image: dict = {}
        for annotation in coco.get("annotations", []):
            by_image.setdefault(annotation.get("image_id"), []).append(annotation)
        for entry in sorted(coco.get("images", []), key=lambda e: natural_key(str(e.get("file_name", "")))):
            name = str(entry.get("file_name", ""))
            listed.add(Path(name).name)
            anns = by_image.get(entry.get("id"), [])
            labels = sorted({mapping[a["category_id"]] for a in anns if a.get("category_id") in mapping})
            yield Sample(
                f"images/{Path(name).name}",
                lambda image=root / "images" / Path(name).name, entry=entry, anns=anns, mapping=mapping, source=f"images/{Path(name).name}": (
                    _load(image, entry, anns, mapping, source, report)
                ),
                class_labels=labels,
                split=split,
            )
    unlisted = [p for p in (root / "images").iterdir() if p.is_file() and p.name not in listed]
    if unlisted:
        report.note(f"{len(unlisted)} images in images/ are in neither split file of fold {fold}; left out")


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"fold": 0}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert GIST514-DB (train and val files of ``fold``) into ``out_dir`` (see the module docstring)."""
    fold = options.extras(OPTIONS, DATASET)["fold"]
    root = find_root(raw_dir)
    if not any((root / "annotations" / p.format(fold=fold)).is_file() for _, p in SPLIT_FILES):
        raise DatasetError(f"{root / 'annotations'}: no {{train,val}}_anno_crop_split_{fold}.json")
    report = ConversionReport(DATASET)
    return convert_samples(
        DATASET,
        CATEGORIES,
        _samples(root, fold, report),
        out_dir,
        options,
        description="GIST514-DB",
        url=URL,
        report=report,
    )
