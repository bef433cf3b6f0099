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
components; its categories are the file's (the shared sample is class-agnostic).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from ultrasam_training.data.coco import CocoBuilder, normalise_coco
from ultrasam_training.data.convert.busi import natural_key
from ultrasam_training.data.convert.output import DatasetOutput
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples, read_image_file
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import image_size, read_array
from ultrasam_training.data.jsonio import read_json
from ultrasam_training.data.masks import rle_area, rle_bbox
from ultrasam_training.data.report import ConversionReport

DATASET = "mmotu_2d"
URL = "https://github.com/cv516Buaa/MMOTU_DS2Net"
#: tumour types in class-index order of the cls files (the raw release's categories)
CLASSES = (
    "chocolate_cyst", "serous_cystadenoma", "teratoma", "thera_cell_tumor",
    "simple_cyst", "normal_ovary", "mucinous_cystadenoma", "high_grade_serous",
)
CATEGORIES = CLASSES
CLS_FILES = {"train_cls.txt": "train", "val_cls.txt": "test"}
RAW_EXPECTED = "OTU_2d/{images/<n>.JPG, annotations/<n>_binary.PNG or <n>.PNG, train_cls.txt, val_cls.txt}"


def find_raw_root(raw_dir: str | Path) -> Path | None:
    """The raw release folder (``raw_dir`` or its ``OTU_2d``), or None when ``raw_dir`` is not one."""
    raw_dir = Path(raw_dir)
    for candidate in (raw_dir, raw_dir / "OTU_2d", raw_dir / "OTU_2d" / "OTU_2d"):
        if (candidate / "images").is_dir() and (candidate / "annotations").is_dir() and any(
            (candidate / name).is_file() for name in CLS_FILES
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


def convert_raw(
    root: Path,
    out_dir: str | Path,
    *,
    image_mode: str = "copy",
    overwrite: bool = False,
    keep_empty: bool = False,
    limit: int | None = None,
    progress: bool = True,
) -> ConversionReport:
    """Convert the raw OTU_2d release at ``root`` (see the module docstring)."""
    report = ConversionReport(DATASET)
    return convert_samples(
        DATASET, CATEGORIES, _raw_samples(root, report), out_dir, description="MMOTU-2D ovarian tumours (OTU_2d)",
        url=URL, image_mode=image_mode, overwrite=overwrite, keep_empty=keep_empty, limit=limit,
        progress=progress, report=report,
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


def convert(
    raw_dir: str | Path,
    out_dir: str | Path,
    *,
    image_mode: str = "copy",
    overwrite: bool = False,
    split: str | None = "test",
    keep_empty: bool = False,
    limit: int | None = None,
    progress: bool = True,
) -> ConversionReport:
    """Convert the raw OTU_2d release, or re-emit a COCO-form MMOTU folder, into ``out_dir``.

    ``split`` is recorded for the COCO form only (the raw release takes it from the cls files);
    ``keep_empty`` applies to the raw release (COCO-form images without annotation are kept);
    ``limit`` stops after that many images in both.
    """
    raw_root = find_raw_root(raw_dir)
    if raw_root is not None:
        return convert_raw(
            raw_root, out_dir, image_mode=image_mode, overwrite=overwrite, keep_empty=keep_empty, limit=limit,
            progress=progress,
        )
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be a positive number of images, not {limit}")
    coco_file = find_coco_file(raw_dir)
    folder = coco_file.parent
    raw = read_json(coco_file)
    coco = normalise_coco(raw, source=str(coco_file))
    output = DatasetOutput(DATASET, out_dir, image_mode=image_mode, overwrite=overwrite)
    categories = {c["id"]: c["name"] for c in coco["categories"]}
    builder = CocoBuilder(DATASET, categories, description="MMOTU-2D (UltraSam COCO release)", url=URL)
    report = ConversionReport(DATASET)
    by_image: dict[int, list[dict]] = {}
    for annotation in coco["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    for image in tqdm(coco["images"], desc="MMOTU", unit="img", disable=not progress):
        if limit is not None and report.images >= limit:
            break
        source = _find_image(folder, image["file_name"])
        if source is None:
            report.skip(image["file_name"], "image file not found next to the COCO file")
            continue
        try:
            height, width = image_size(source)
        except DatasetError as exc:
            report.skip(image["file_name"], str(exc))
            continue
        if (height, width) != (image["height"], image["width"]):
            report.skip(image["file_name"], f"file is {width}x{height}, COCO says {image['width']}x{image['height']}")
            continue
        file_name = output.place_image_or_skip(source, report, image["file_name"])
        if file_name is None:
            continue
        image_id = builder.add_image(
            file_name, height, width, source_path=source.relative_to(folder).as_posix(), split=split
        )
        for annotation in by_image.get(image["id"], []):
            rle = annotation["segmentation"]
            if rle_area(rle) == 0:
                report.skip(f"{image['file_name']} annotation {annotation.get('source_id', annotation['id'])}", "empty mask")
                continue
            given_bbox, given_area = annotation.get("bbox"), annotation.get("area")
            if given_area != rle_area(rle) or [float(v) for v in given_bbox] != rle_bbox(rle):
                report.note(f"{image['file_name']}: given bbox/area disagree with the mask; recomputed")
            builder.add_rle(
                image_id, rle, annotation["category_id"], source_id=annotation.get("source_id", annotation["id"])
            )
            report.instances += 1
        if not by_image.get(image["id"]):
            report.empty.append(image["file_name"])
        report.images += 1
    output.finish(builder.to_dict(), report)
    return report
