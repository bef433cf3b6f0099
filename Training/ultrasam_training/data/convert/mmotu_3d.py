"""MMOTU-3D (OTU_3d, the contrast-enhanced "OTU_CEUS" part of MMOTU, Zhao et al. 2022) -> COCO.

Raw layout (the MMOTU download; ``OTU_3d/`` may be the folder given or one or two levels down)::

    OTU_3d/images/<n>.JPG
    OTU_3d/annotations/<n>.PNG          # colour or grey mask, non-zero = lesion
    OTU_3d/train.txt, OTU_3d/val.txt    # optional: image stems of the published split

Every non-zero mask pixel is ``lesion``; every connected component is one instance. As the
released converter, files whose name contains ``_`` (mask variants such as ``<n>_binary.PNG``)
are not used; the report counts them. When ``train.txt``/``val.txt`` are present their split is
kept (``split`` "train"/"val"; the released converter ignored it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples, natural_key, read_image_file
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import read_array
from ultrasam_training.data.report import ConversionReport

DATASET = "mmotu_3d"
CATEGORIES = ("lesion",)
URL = "https://github.com/cv516Buaa/MMOTU_DS2Net"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def find_root(raw_dir: str | Path) -> Path:
    """The folder holding ``images/`` and ``annotations/``: ``raw_dir``, ``OTU_3d`` or ``MMOTU/OTU_3d``."""
    raw_dir = Path(raw_dir)
    for candidate in (raw_dir, raw_dir / "OTU_3d", raw_dir / "MMOTU" / "OTU_3d"):
        if (candidate / "images").is_dir() and (candidate / "annotations").is_dir():
            return candidate
    raise DatasetError(f"{raw_dir}: expected OTU_3d/images/*.JPG and OTU_3d/annotations/*.PNG")


def _split_of(root: Path) -> dict[str, str]:
    split = {}
    for name in ("train", "val"):
        path = root / f"{name}.txt"
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").split():
                split[Path(line).stem] = name
    return split


def _load(image: Path, mask_path: Path) -> Loaded:
    read_image_file(image)
    mask = read_array(mask_path)
    lesion = mask[..., :3].any(axis=-1) if mask.ndim == 3 else mask != 0
    return Loaded(image, [("lesion", np.asarray(lesion))])


def _files(folder: Path, report: ConversionReport) -> dict[str, Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    variants = [p for p in files if "_" in p.name]
    if variants:
        report.note(f"{folder.name}/: {len(variants)} files with '_' in the name (mask variants) not used")
    return {p.stem: p for p in files if "_" not in p.name}


def _samples(root: Path, report: ConversionReport):
    images, masks = _files(root / "images", report), _files(root / "annotations", report)
    split = _split_of(root)
    for stem in sorted(set(masks) - set(images), key=natural_key):
        report.skip(f"annotations/{masks[stem].name}", "mask without image")
    for stem in sorted(images, key=natural_key):
        mask = masks.get(stem, root / "annotations" / f"{stem}.PNG")  # a missing mask is a skipped pair
        yield Sample(
            f"images/{images[stem].name}",
            lambda image=images[stem], mask=mask: _load(image, mask),
            split=split.get(stem),
        )


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert MMOTU-3D into ``out_dir`` (see the module docstring)."""
    root = find_root(raw_dir)
    report = ConversionReport(DATASET)
    return convert_samples(
        DATASET,
        CATEGORIES,
        _samples(root, report),
        out_dir,
        options,
        description="MMOTU-3D (OTU_3d)",
        url=URL,
        report=report,
    )
