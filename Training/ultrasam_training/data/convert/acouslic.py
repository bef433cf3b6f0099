"""ACOUSLIC-AI blind-sweep fetal abdomen ultrasound (MICCAI 2024 challenge, Radboudumc) -> COCO.

Raw layout (the public training set, ``acouslic-ai-train-set``): ``images/stacked_fetal_ultrasound/
<uuid>.mha`` (the six sweeps of one case stacked as frames) with ``masks/stacked_fetal_abdomen/
<uuid>.mha``, and optionally ``circumferences/fetal_abdominal_circumferences_per_sweep.csv``
(columns ``uuid``, ``subject_id``, ``sweep_<n>_ac_mm``), which gives the patient id.

Frames are axis 0 of the SimpleITK array; only frames with an abdomen mask are kept. Mask value 1
(optimal plane) and 2 (suboptimal plane) are both ``abdomen`` as in the released converter, but
the plane quality is no longer lost: it is the frame's class label (``optimal``/``suboptimal``).
Patient id: the CSV ``subject_id`` (else the uuid); case id: the uuid. Unlike the released
converter (``astype(uint8)``), intensities are windowed once per sweep (a no-op for uint8 sweeps).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ultrasam_training.data.convert._volume_pairs import VolumePair, convert_pairs, find_root, pair_files
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.report import ConversionReport

DATASET = "acouslic"
CATEGORIES = ("abdomen",)
URL = "https://acouslic-ai.grand-challenge.org/"
MAPPING = {1: "abdomen", 2: "abdomen"}
PLANES = {1: "optimal", 2: "suboptimal"}
IMAGES, MASKS = "images/stacked_fetal_ultrasound", "masks/stacked_fetal_abdomen"
CSV = "circumferences/fetal_abdominal_circumferences_per_sweep.csv"
EXPECTED = f"{IMAGES}/<uuid>.mha with {MASKS}/<uuid>.mha, optionally inside acouslic-ai-train-set/"


def _subjects(root: Path, report: ConversionReport) -> dict[str, str]:
    """uuid -> subject_id from the circumference CSV (empty when it is absent)."""
    path = root / CSV
    if not path.is_file():
        report.note(f"{CSV} not found: patient id = sweep uuid")
        return {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"uuid", "subject_id"} <= set(rows[0]):
        report.note(f"{CSV}: no uuid/subject_id columns ({', '.join(rows[0])}): patient id = sweep uuid")
        return {}
    return {row["uuid"]: row["subject_id"] for row in rows}


def _planes(label_slice: np.ndarray) -> list[str]:
    return [name for value, name in PLANES.items() if np.any(label_slice == value)]


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert the ACOUSLIC-AI training sweeps into ``out_dir`` (one image per annotated frame)."""
    root = find_root(raw_dir, ["acouslic-ai-train-set"], lambda p: (p / IMAGES).is_dir(), EXPECTED)
    report = ConversionReport(DATASET)
    subjects = _subjects(root, report)
    images = {p.stem: p for p in (root / IMAGES).glob("*.mha")}
    masks = {p.stem: p for p in (root / MASKS).glob("*.mha")} if (root / MASKS).is_dir() else {}
    pairs = [
        VolumePair(image, label, image.relative_to(root).as_posix(), patient_id=subjects.get(uuid, uuid), case_id=uuid)
        for uuid, image, label in pair_files(images, masks, root, report)
    ]
    return convert_pairs(
        DATASET,
        CATEGORIES,
        pairs,
        out_dir,
        options,
        report=report,
        description="ACOUSLIC-AI fetal abdomen sweeps",
        url=URL,
        expected=EXPECTED,
        mapping=MAPPING,
        unit="frame",
        slice_labels=_planes,
    )
