"""CAMUS 2-D echocardiography (Leclerc et al., IEEE TMI 2019) -> COCO.

Raw layout (``CAMUS_public``): ``database_nifti/patientNNNN/patientNNNN_{2CH,4CH}_half_sequence.nii.gz``
with ``..._half_sequence_gt.nii.gz``, and optionally ``database_split/subgroup_{training,
validation,testing}.txt`` (one ``patientNNNN`` per line), the official split kept as ``split``.
Every annotated frame (axis 0 = time) of each half sequence becomes an image; the ED/ES files
are copies of two of those frames and are not read. Labels: 1 endocardium (LV cavity),
2 epicardium (myocardium), 3 atrium_wall (left atrium); the mask is zeroed where the image is 0
(outside the sector), as in the released converter. Patient id ``patientNNNN``, case id
``patientNNNN_2CH``. Unlike the released converter, all patients go into ONE COCO file (no
per-patient files to merge) and intensities are windowed once per sequence.
"""

from __future__ import annotations

import re
from pathlib import Path

from ultrasam_training.data.convert._volume_pairs import (
    VolumePair,
    convert_pairs,
    find_root,
    nifti_stem,
    zero_outside_image,
)
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.report import ConversionReport

DATASET = "camus"
CATEGORIES = ("endocardium", "epicardium", "atrium_wall")
URL = "https://www.creatis.insa-lyon.fr/Challenge/camus/"
MAPPING = {1: "endocardium", 2: "epicardium", 3: "atrium_wall"}
SPLIT_FILES = {"subgroup_training.txt": "train", "subgroup_validation.txt": "val", "subgroup_testing.txt": "test"}
_NAME = re.compile(r"^(?P<patient>patient\d+)_(?P<view>2CH|4CH)_half_sequence$")
EXPECTED = "database_nifti/patientNNNN/patientNNNN_{2CH,4CH}_half_sequence(_gt).nii.gz, optionally in CAMUS_public/"


def _splits(root: Path) -> dict[str, str]:
    """patient -> official split, from ``database_split`` when it is there."""
    splits = {}
    for name, split in SPLIT_FILES.items():
        path = root / "database_split" / name
        if path.is_file():
            splits.update({line.strip(): split for line in path.read_text().splitlines() if line.strip()})
    return splits


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert CAMUS half sequences into ``out_dir`` (one image per annotated frame)."""
    root = find_root(raw_dir, ["CAMUS_public"], lambda p: (p / "database_nifti").is_dir(), EXPECTED)
    report = ConversionReport(DATASET)
    splits = _splits(root)
    if not splits:
        report.note("database_split/ not found: no official split recorded")
    pairs = []
    for image in sorted((root / "database_nifti").glob("patient*/*_half_sequence.nii.gz")):
        match = _NAME.match(nifti_stem(image))
        if match is None:
            continue
        label = image.with_name(f"{nifti_stem(image)}_gt.nii.gz")
        pairs.append(
            VolumePair(
                image,
                label if label.is_file() else None,
                image.relative_to(root).as_posix(),
                patient_id=match["patient"],
                case_id=f"{match['patient']}_{match['view']}",
                split=splits.get(match["patient"]),
                extra={"view": match["view"]},
            )
        )
    return convert_pairs(
        DATASET,
        CATEGORIES,
        pairs,
        out_dir,
        options,
        report=report,
        description="CAMUS echocardiography half sequences",
        url=URL,
        expected=EXPECTED,
        mapping=MAPPING,
        unit="frame",
        fix_label=zero_outside_image,
    )
