"""STMUS_NDA transverse musculoskeletal ultrasound (Marzola et al., Comput Biol Med 2021; Mendeley 3jykz7wz8d) -> COCO.

Raw layout: the Mendeley download holds ``DATASET_10.1016j.compbiomed.2021.104623.zip``, which
unpacks to ``Polito-Radboud-DeepLearningUS/{BB,GM,TA}/`` (biceps brachii, gastrocnemius medialis,
tibialis anterior); below each muscle, masks are the PNGs in folders named ``Masks`` and images the
PNGs of the same name in the sibling folder (e.g. ``Healthy/Images`` + ``Healthy/Masks``). Every
non-zero mask component is one ``transverse_musculoskeletal`` instance, as in the released
converter; images with an empty mask are excluded (reported) unless ``keep_empty=True``. The muscle
is kept as an image field and a ``Healthy``/``Pathological`` folder, when present, as the class.
Unlike the released converter, images are paired inside their own muscle folder (it paired by
file stem over all three, so equal names in two muscles overwrote each other).
"""

from __future__ import annotations

from pathlib import Path

from ultrasam_training.data.convert._labelled_2d import (
    find_root,
    index_files,
    natural_key,
    relative,
    sorted_paths,
)
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples, read_image_file
from ultrasam_training.data.images import read_gray_mask
from ultrasam_training.data.report import ConversionReport

DATASET = "stmus_nda"
CATEGORIES = ("transverse_musculoskeletal",)
URL = "https://data.mendeley.com/datasets/3jykz7wz8d/1"
MUSCLES = ("BB", "GM", "TA")
CONDITIONS = ("healthy", "pathological")
_EXPECTED = (
    "Polito-Radboud-DeepLearningUS/{BB,GM,TA}/.../Masks/*.png with images alongside "
    "(unpack DATASET_10.1016j.compbiomed.2021.104623.zip first)"
)


def _loader(image: Path, mask: Path):
    return lambda: Loaded(read_image_file(image), [(CATEGORIES[0], read_gray_mask(mask) > 0)])


def _group(path: Path, is_mask: bool) -> Path:
    """The folder an image and its mask share: the parent of ``Masks/`` (and of the image folder)."""
    if is_mask or not (path.parent / "Masks").is_dir():
        return path.parent.parent
    return path.parent


def _muscle_samples(root: Path, muscle_dir: Path, report: ConversionReport) -> list[Sample]:
    folders = sorted_paths([muscle_dir, *(p for p in muscle_dir.rglob("*") if p.is_dir())])
    images: dict[tuple[Path, str], Path] = {}
    masks: dict[tuple[Path, str], Path] = {}
    for folder in folders:
        is_mask = folder.name.lower() == "masks"
        for stem, path in index_files(folder, report).items():
            (masks if is_mask else images)[(_group(path, is_mask), stem)] = path
    for key in sorted(set(masks) - set(images), key=lambda k: natural_key(relative(masks[k], root))):
        report.skip(relative(masks[key], root), "mask without image")
    samples = []
    for key in sorted(images, key=lambda k: natural_key(relative(images[k], root))):
        image, source = images[key], relative(images[key], root)
        if key not in masks:
            report.skip(source, "no mask of the same name in a sibling Masks/ folder")
            continue
        parts = [p.lower() for p in image.relative_to(muscle_dir).parts]
        labels = [c for c in CONDITIONS if c in parts]
        samples.append(
            Sample(source, _loader(image, masks[key]), class_labels=labels, extra={"muscle": muscle_dir.name})
        )
    return samples


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert STMUS_NDA (the unpacked ``Polito-Radboud-DeepLearningUS`` folder) into ``out_dir``."""
    root = find_root(raw_dir, lambda d: any((d / m).is_dir() for m in MUSCLES), _EXPECTED, depth=4)
    report = ConversionReport(DATASET)
    samples = []
    for muscle in MUSCLES:
        if (root / muscle).is_dir():
            samples += _muscle_samples(root, root / muscle, report)
        else:
            report.note(f"muscle folder {muscle}/ is missing")
    return convert_samples(
        DATASET,
        CATEGORIES,
        samples,
        out_dir,
        options,
        description="STMUS_NDA transverse musculoskeletal ultrasound",
        url=URL,
        report=report,
    )
