"""S1 breast ultrasound (breast tumour segmentation and classification, PMC8205136) -> COCO.

Raw layout: ``Data/{TrainingDataSet,TestingDataSet}/BreastTumourImages/<id>.jpg`` with masks in
``Expanded-3-channel-Labels/<id>.png`` (grey value 127 benign, 255 malignant) and binary
``General-1-channel-Labels/<id>.png``. As in the released converter the "General" labels are not
used (they only say lesion/background; counted in a note) and 127 -> ``benign``, 255 ->
``malignant``. Other mask values are reported, never silently dropped. The published
``TrainingDataSet`` / ``TestingDataSet`` folders are kept as ``split="train"`` / ``"test"``; unlike
the released converter, images are paired with masks inside their own split folder (it paired by
file stem across both, so equal ids in train and test overwrote each other).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ultrasam_training.data.convert._labelled_2d import find_root, index_files, sorted_paths
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Sample, convert_samples, load_label_map
from ultrasam_training.data.report import ConversionReport

DATASET = "s1"
CATEGORIES = ("benign", "malignant")
URL = "https://www.ncbi.nlm.nih.gov/pmc/articles/PMC8205136/"
SPLITS = {"TrainingDataSet": "train", "TestingDataSet": "test"}
MAPPING = {127: "benign", 255: "malignant"}


def _split_samples(split_dir: Path, split: str, report: ConversionReport) -> list[Sample]:
    folders = sorted_paths(p for p in split_dir.iterdir() if p.is_dir())
    general = [f for f in folders if "general" in f.name.lower()]
    label_dirs = [f for f in folders if "label" in f.name.lower() and f not in general]
    image_dirs = [f for f in folders if "label" not in f.name.lower()]
    for folder in general:
        report.note(f"{split_dir.name}/{folder.name}/ not used ({len(index_files(folder))} binary 'General' labels)")
    images = {stem: path for folder in image_dirs for stem, path in index_files(folder, report).items()}
    masks = {stem: path for folder in label_dirs for stem, path in index_files(folder, report).items()}
    prefix = split_dir.name
    for stem in sorted(set(masks) - set(images)):
        report.skip(f"{prefix}/{masks[stem].parent.name}/{masks[stem].name}", "mask without image")
    samples = []
    for stem, image in images.items():
        source = f"{prefix}/{image.parent.name}/{image.name}"
        if stem not in masks:
            report.skip(source, f"no {stem}.png in the Expanded-3-channel-Labels folder")
            continue
        load = partial(load_label_map, image, masks[stem], MAPPING, source, report, "neither 127 nor 255")
        samples.append(Sample(source, load, case_id=stem, split=split))
    return samples


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert S1 (``Data/TrainingDataSet`` and ``Data/TestingDataSet``) into ``out_dir``."""
    root = find_root(
        raw_dir,
        lambda d: any((d / name).is_dir() for name in SPLITS),
        "Data/{TrainingDataSet,TestingDataSet}/{BreastTumourImages,Expanded-3-channel-Labels}/",
    )
    report = ConversionReport(DATASET)
    samples = []
    for folder, split in SPLITS.items():
        if (root / folder).is_dir():
            samples += _split_samples(root / folder, split, report)
        else:
            report.note(f"{folder}/ is missing")
    return convert_samples(
        DATASET,
        CATEGORIES,
        samples,
        out_dir,
        options,
        description="S1 breast ultrasound tumour segmentation",
        url=URL,
        report=report,
    )
