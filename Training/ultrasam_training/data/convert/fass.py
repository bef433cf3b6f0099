"""FASS, Fetal Abdominal Structures Segmentation (Mendeley Data 4gcpm9dsc3) -> COCO.

Raw layout (the Mendeley download and its inner zip extracted)::

    Fetal Abdominal Structures Segmentation Dataset Using Ultrasonic Images/
        <any folder, e.g. IMAGES>/<name>.png
        ARRAY_FORMAT/<name>.npy     # pickled dict; ["structures"] = {"artery": mask, "liver": ..., ...}

Each PNG is paired with the ``.npy`` of the same stem (as the released converter); the masks of
``structures`` (non-zero = inside) become ``artery``, ``liver``, ``stomach``, ``vein``, one
instance per connected component. Structure names outside these four are reported, never
dropped silently. The ``.npy`` files are pickles: they are read by
:func:`ultrasam.safe_unpickle.load_npy`, which rebuilds arrays and plain containers only and
refuses anything else, so a tampered file cannot run code. No patient id is kept (the file names do not state one reliably).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ultrasam.errors import CheckpointError
from ultrasam.safe_unpickle import load_npy
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples, natural_key, read_image_file
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.report import ConversionReport

DATASET = "fass"
CATEGORIES = ("artery", "liver", "stomach", "vein")
URL = "https://data.mendeley.com/datasets/4gcpm9dsc3/1"
TOP_FOLDER = "Fetal Abdominal Structures Segmentation Dataset Using Ultrasonic Images"
ARRAYS = "ARRAY_FORMAT"


def find_root(raw_dir: str | Path) -> Path:
    """The folder holding ``ARRAY_FORMAT/``: ``raw_dir`` or its published top folder."""
    raw_dir = Path(raw_dir)
    for candidate in (raw_dir, raw_dir / TOP_FOLDER, raw_dir / TOP_FOLDER / TOP_FOLDER):
        if (candidate / ARRAYS).is_dir():
            return candidate
    raise DatasetError(f"{raw_dir}: no {ARRAYS}/ folder (expected '{TOP_FOLDER}/{ARRAYS}/*.npy' + PNG images)")


def _structures(path: Path) -> dict:
    try:
        content = load_npy(path)  # pickled dicts, read by the restricted unpickler: no code runs
        data = content.item() if isinstance(content, np.ndarray) and content.shape == () else content
    except CheckpointError as exc:
        raise DatasetError(f"cannot read {path.name}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("structures"), dict):
        raise DatasetError(f"{path.name} holds no dict with a 'structures' dict")
    return data["structures"]


def _load(image: Path, arrays: Path, source: str, report: ConversionReport) -> Loaded:
    read_image_file(image)
    structures = _structures(arrays)
    unknown = sorted(str(name) for name in structures if name not in CATEGORIES)
    if unknown:
        report.note(f"{source}: structures {', '.join(unknown)} have no category; left out")
    return Loaded(
        image, [(name, np.squeeze(np.asarray(structures[name])) != 0) for name in CATEGORIES if name in structures]
    )


def _samples(root: Path, report: ConversionReport):
    arrays = {p.stem: p for p in (root / ARRAYS).glob("*.npy")}
    images = {
        p.stem: p for p in root.rglob("*") if p.suffix.lower() == ".png" and p.is_file() and ARRAYS not in p.parts
    }
    for stem in sorted(set(arrays) - set(images), key=natural_key):
        report.skip(f"{ARRAYS}/{arrays[stem].name}", "mask arrays without a PNG image")
    for stem in sorted(images, key=natural_key):
        source = str(images[stem].relative_to(root))
        if stem not in arrays:
            report.skip(source, f"no {ARRAYS}/{stem}.npy")
            continue
        yield Sample(
            source, lambda image=images[stem], npy=arrays[stem], source=source: _load(image, npy, source, report)
        )


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert FASS into ``out_dir`` (see the module docstring)."""
    root = find_root(raw_dir)
    report = ConversionReport(DATASET)
    return convert_samples(
        DATASET,
        CATEGORIES,
        _samples(root, report),
        out_dir,
        options,
        description="FASS: Fetal Abdominal Structures Segmentation",
        url=URL,
        report=report,
    )
