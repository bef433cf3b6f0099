"""AbdomenUS: abdominal ultrasound simulation and segmentation (Vitale et al. 2020; Kaggle ussimandsegm) -> COCO.

Raw layout (the Kaggle archive unpacks to ``abdominal_US/abdominal_US/``): ``{RUS,AUS}/images/
{train,test}/<name>.{png,jpg}`` with colour-coded masks ``{RUS,AUS}/annotations/{train,test}/
<name>.png``. RUS are real scans (only part of them annotated), AUS synthetic images rendered
from CT. Mask colours (RGB): liver (100,0,100), kidney (255,255,0), pancreas (0,0,255), vessels
(255,0,0), adrenals (0,255,255), gallbladder (0,255,0), bones (255,255,255), spleen (255,0,255);
other colours are reported. Each component of each colour is one instance.

Differences from the released converter: it compared this RGB table with BGR-decoded masks, so
kidney/adrenals and pancreas/vessels were swapped; here masks are decoded as RGB. It paired files
by bare name over all folders (a RUS and an AUS image of the same name collided); here by folder.
As there, AUS images are left out by default (reported as excluded; ``include_aus=True`` keeps
them), and images without annotation file are excluded. The published train/test folders are a
domain-adaptation split (all annotated real scans are in ``test``), so they are not used as the
split unless ``folder_split=True``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from ultrasam_training.data.convert._labelled_2d import find_root, index_files, load_colour_mask, natural_key
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Sample, convert_samples
from ultrasam_training.data.report import ConversionReport

DATASET = "abdomenus"
CATEGORIES = ("liver", "kidney", "gallbladder", "spleen", "pancreas", "vessels", "adrenals", "bones")
URL = "https://www.kaggle.com/datasets/ignaciorlando/ussimandsegm"
COLORS = {
    (100, 0, 100): "liver",
    (255, 255, 0): "kidney",
    (0, 0, 255): "pancreas",
    (255, 0, 0): "vessels",
    (0, 255, 255): "adrenals",
    (0, 255, 0): "gallbladder",
    (255, 255, 255): "bones",
    (255, 0, 255): "spleen",
}
DOMAINS = ("RUS", "AUS")
_SPLITS = {"train": "train", "test": "test", "val": "val"}


def _index(top: Path, report: ConversionReport) -> dict[tuple[str, str], Path]:
    """``{(sub-folder, stem): file}`` of the images below ``top`` (``train/``, ``test/`` or none)."""
    found: dict[tuple[str, str], Path] = {}
    if not top.is_dir():
        return found
    for folder in [top, *sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: natural_key(p.as_posix()))]:
        for stem, path in index_files(folder, report).items():
            found[(folder.relative_to(top).as_posix(), stem)] = path
    return found


def _domain_samples(root: Path, domain: str, folder_split: bool, report: ConversionReport) -> list[Sample]:
    images = _index(root / domain / "images", report)
    masks = _index(root / domain / "annotations", report)
    for key in sorted(set(masks) - set(images), key=lambda k: natural_key("/".join(k))):
        report.skip(masks[key].relative_to(root).as_posix(), "annotation without image")
    samples = []
    for key in sorted(images, key=lambda k: natural_key("/".join(k))):
        image = images[key]
        source = image.relative_to(root).as_posix()
        if key not in masks:
            report.exclude(source, "no annotation file (image not annotated)")
            continue
        split = _SPLITS.get(key[0].split("/")[0].lower()) if folder_split else None
        load = partial(load_colour_mask, image, masks[key], COLORS, source, report, "not in the colour table")
        samples.append(Sample(source, load, split=split, extra={"domain": domain}))
    return samples


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"include_aus": False, "folder_split": False}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert AbdomenUS into ``out_dir``: real (RUS) scans, and the synthetic AUS ones if ``include_aus``."""
    include_aus, folder_split = options.extras(OPTIONS, DATASET).values()
    root = find_root(
        raw_dir,
        lambda d: any((d / domain / "images").is_dir() for domain in DOMAINS),
        "abdominal_US/{RUS,AUS}/{images,annotations}/{train,test}/",
    )
    report = ConversionReport(DATASET)
    samples = _domain_samples(root, "RUS", folder_split, report)
    aus = _domain_samples(root, "AUS", folder_split, report)
    if include_aus:
        samples += aus
    else:
        for sample in aus:
            report.exclude(sample.source_path, "AUS: synthetic image rendered from CT (include_aus=True keeps it)")
    return convert_samples(
        DATASET,
        CATEGORIES,
        samples,
        out_dir,
        options,
        description="AbdomenUS: abdominal ultrasound simulation and segmentation",
        url=URL,
        report=report,
    )
