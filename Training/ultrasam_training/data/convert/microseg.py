"""MicroSeg: micro-ultrasound prostate segmentation (Jiang et al., CMIG 2024; Zenodo 10475293) -> COCO.

Duplicate source: MicroSeg and MUP (``mup.py``) are two released converters of the SAME Zenodo
record; convert one of them only, or the same slices enter training twice.

Raw layout (``Micro_Ultrasound_Prostate_Segmentation_Dataset``): ``{train,test}/micro_ultrasound_scans/
microUS_<split>_<NN>.nii.gz`` with ``{train,test}/expert_annotations/expert_annotation_<split>_<NN>.nii.gz``;
the ``non_expert_annotations`` of the training set are not used. Pairs are matched by split and
number; the official split is kept (``split``), patient id ``<split>_<NN>``. Axial slices with a
prostate annotation (label 1) become images; the mask is zeroed where the image is 0 and image and
mask are flipped over both axes (mmcv's ``diagonal`` flip), as released.
Bugs of the released converter fixed: it keyed pairs by number only, so train and test volumes
with the same number overwrote each other, and its ``"expert_annotations" in path`` test also
matched ``non_expert_annotations``, so a volume could be paired with the non-expert mask; it
also cast intensities with ``astype(uint8)`` where this windows them once per volume.
"""

from __future__ import annotations

import re
from pathlib import Path

from ultrasam_training.data.convert._volume_pairs import (
    VolumePair,
    convert_pairs,
    find_root,
    nifti_stem,
    pair_files,
    zero_outside_image,
)
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.report import ConversionReport

DATASET = "microseg"
CATEGORIES = ("prostate",)
URL = "https://zenodo.org/records/10475293"
MAPPING = {1: "prostate"}
SPLITS = ("train", "test")
ROOT_NAME = "Micro_Ultrasound_Prostate_Segmentation_Dataset"
EXPECTED = (
    f"{{train,test}}/micro_ultrasound_scans/microUS_<split>_<NN>.nii.gz + "
    f"{{train,test}}/expert_annotations/expert_annotation_<split>_<NN>.nii.gz, optionally in {ROOT_NAME}/"
)
_NUMBER = re.compile(r"(\d+)$")


def _by_number(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {m[1]: p for p in folder.glob("*.nii*") if (m := _NUMBER.search(nifti_stem(p)))}


def micro_us_pairs(raw_dir: str | Path, report: ConversionReport) -> list[VolumePair]:
    """The (scan, expert annotation) pairs of both official splits; shared with ``mup``."""
    root = find_root(
        raw_dir, [ROOT_NAME], lambda p: any((p / s / "micro_ultrasound_scans").is_dir() for s in SPLITS), EXPECTED
    )
    pairs = []
    for split in SPLITS:
        images = _by_number(root / split / "micro_ultrasound_scans")
        if not images:
            report.note(f"{split}/micro_ultrasound_scans: no scans")
        labels = _by_number(root / split / "expert_annotations")
        for number, image, label in pair_files(images, labels, root, report):
            case = f"{split}_{number}"
            pairs.append(
                VolumePair(image, label, image.relative_to(root).as_posix(), patient_id=case, case_id=case, split=split)
            )
    return pairs


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert the micro-US prostate volumes the MicroSeg way into ``out_dir`` (annotated slices only)."""
    report = ConversionReport(DATASET)
    pairs = micro_us_pairs(raw_dir, report)
    return convert_pairs(
        DATASET,
        CATEGORIES,
        pairs,
        out_dir,
        options,
        report=report,
        description="MicroSeg micro-ultrasound prostate",
        url=URL,
        expected=EXPECTED,
        mapping=MAPPING,
        flip_how="diagonal",
        fix_label=zero_outside_image,
    )
