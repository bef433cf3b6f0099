"""BUS_UC breast ultrasound (Mendeley Data 3ksd7w7jkx) -> COCO.

Raw layout: ``BUS_UC/{Benign,Malignant}/images/<name>.png`` with ``.../masks/<name>.png`` (0/255);
``All/`` repeats the two class folders and is skipped (reported in a note). Every mask component
(>= 128) becomes a ``benign`` or ``malignant`` instance by its class folder, which is also kept as
the image-level label. As in the released converter, a mask whose size differs from its image is
resized (nearest neighbour) to the image; unlike it, every such resize is named in the report.
"""

from __future__ import annotations

from pathlib import Path

from ultrasam_training.data.convert._labelled_2d import find_root, index_files, resize_nearest
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples, read_image_file
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import image_size, read_gray_mask
from ultrasam_training.data.report import ConversionReport

DATASET = "bus_uc"
CATEGORIES = ("benign", "malignant")
URL = "https://data.mendeley.com/datasets/3ksd7w7jkx/1"
FOLDERS = {"Benign": "benign", "Malignant": "malignant"}
THRESHOLD = 128


def _class_dir(root: Path, name: str) -> Path | None:
    for candidate in (name, name.lower(), name.upper()):
        if (root / candidate).is_dir():
            return root / candidate
    return None


def _loader(image: Path, mask_path: Path, category: str, source: str, report: ConversionReport):
    def load() -> Loaded:
        shape = image_size(read_image_file(image))
        mask = read_gray_mask(mask_path)
        if mask.shape != shape:
            report.note(
                f"{source}: mask {mask.shape[1]}x{mask.shape[0]} resized (nearest) to the image {shape[1]}x{shape[0]}"
            )
            mask = resize_nearest(mask, shape)
        return Loaded(image, [(category, mask >= THRESHOLD)])

    return load


def _samples(root: Path, report: ConversionReport) -> list[Sample]:
    if _class_dir(root, "All") is not None:
        report.note("All/ skipped: it repeats the Benign/ and Malignant/ images")
    samples = []
    for folder, category in FOLDERS.items():
        class_dir = _class_dir(root, folder)
        if class_dir is None:
            report.note(f"class folder {folder}/ is missing")
            continue
        images = index_files(class_dir / "images", report)
        masks = index_files(class_dir / "masks", report)
        for stem in sorted(set(masks) - set(images)):
            report.skip(f"{class_dir.name}/masks/{masks[stem].name}", "mask without image")
        for stem, image in images.items():
            source = f"{class_dir.name}/images/{image.name}"
            if stem not in masks:
                report.skip(source, f"no {class_dir.name}/masks/{stem}.*")
                continue
            samples.append(
                Sample(source, _loader(image, masks[stem], category, source, report), class_labels=[category])
            )
    return samples


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert BUS_UC (Benign/ and Malignant/ folders) into ``out_dir``."""
    root = find_root(
        raw_dir, lambda d: any(_class_dir(d, f) for f in FOLDERS), "BUS_UC/{Benign,Malignant}/{images,masks}/*.png"
    )
    report = ConversionReport(DATASET)
    samples = _samples(root, report)
    if not samples and not report.skipped:
        raise DatasetError(f"{root}: no images in Benign/images or Malignant/images")
    return convert_samples(
        DATASET,
        CATEGORIES,
        samples,
        out_dir,
        options,
        description="BUS_UC breast ultrasound",
        url=URL,
        report=report,
    )
