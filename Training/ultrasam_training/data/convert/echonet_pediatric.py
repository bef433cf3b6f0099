"""EchoNet-Pediatric echocardiography videos (Reddy et al., J Am Soc Echocardiogr 2023) -> COCO.

Raw layout (as downloaded: ``pediatric_echo_avi/pediatric_echo_avi/``, either level accepted):
``A4C/`` and ``PSAX/``, each with ``Videos/<FileName>.avi``, ``VolumeTracings.csv`` (columns
``FileName,X,Y,Frame``: the left-ventricle outline points in order; ``No Systolic``/``No Diastolic``
rows mark an untraced phase) and ``FileList.csv`` (``FileName,EF,Sex,Age,Weight,Height,Split``).
Only traced frames become images, one filled ``left_ventricle`` outline each.

Frame index: as the released converter, video frame = ``Frame - 1`` (``frame_offset=-1``); that
the CSV counts from 1 could not be confirmed from a public source, so ``frame_offset=0`` uses the
CSV value as the 0-based index. A traced frame outside the video is reported as skipped (the
released converter's ``vid[-1]`` would silently take the last frame for ``Frame`` 0).
``Split`` is a cross-validation fold 0-9, not train/val/test: it is kept as ``fold`` (no
``split``). Patient id = video name (the data has no separate patient key); ``view`` = A4C/PSAX.
Unlike the released converter, everything goes into one COCO file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ultrasam_training.data.convert._tracings import CATEGORY, folder_samples
from ultrasam_training.data.convert._volume_pairs import find_root
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import convert_samples
from ultrasam_training.data.report import ConversionReport

DATASET = "echonet_pediatric"
CATEGORIES = (CATEGORY,)
URL = "https://echonet.github.io/pediatric/"
VIEWS = ("A4C", "PSAX")
FRAME_OFFSET = -1
EXPECTED = "{A4C,PSAX}/{Videos/<name>.avi, VolumeTracings.csv, FileList.csv}, optionally inside pediatric_echo_avi/"


def _has_view(folder: Path) -> bool:
    return any((folder / view / "VolumeTracings.csv").is_file() for view in VIEWS)


#: dataset-specific options (``--option NAME=VALUE``) and their defaults
OPTIONS: dict[str, Any] = {"frame_offset": FRAME_OFFSET}


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert the traced frames of both EchoNet-Pediatric views into ``out_dir``."""
    frame_offset = options.extras(OPTIONS, DATASET)["frame_offset"]
    root = find_root(raw_dir, ["pediatric_echo_avi", "pediatric_echo_avi/pediatric_echo_avi"], _has_view, EXPECTED)
    report = ConversionReport(DATASET)

    def fields_of(view: str):
        def fields(stem: str, row: dict[str, str] | None) -> dict:
            extra: dict = {"view": view}
            if row and row["Split"].isdigit():
                extra["fold"] = int(row["Split"])
            elif row:
                report.note(f"{view}/FileList.csv: Split {row['Split']!r} of {stem} is not a fold number")
            return {"patient_id": stem, "case_id": f"{stem}_{view}", "extra": extra}

        return fields

    views = [view for view in VIEWS if (root / view / "VolumeTracings.csv").is_file()]
    for view in sorted(set(VIEWS) - set(views)):
        report.note(f"{view}/VolumeTracings.csv not found: view left out")
    samples = (
        sample
        for view in views
        for sample in folder_samples(root / view, f"{view}/", report, fields_of(view), frame_offset=frame_offset)
    )
    return convert_samples(
        DATASET,
        CATEGORIES,
        samples,
        out_dir,
        options,
        description="EchoNet-Pediatric traced echocardiography frames",
        url=URL,
        report=report,
        unit="frame",
    )
