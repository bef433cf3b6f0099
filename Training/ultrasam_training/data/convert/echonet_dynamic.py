"""EchoNet-Dynamic apical-4-chamber echocardiography videos (Ouyang et al., Nature 2020) -> COCO.

Raw layout (``EchoNet-Dynamic/``): ``Videos/<FileName>.avi``, ``VolumeTracings.csv`` (columns
``FileName,X1,Y1,X2,Y2,Frame``: chords across the left ventricle, first row of a frame the long
axis) and ``FileList.csv`` (``FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split``).
Only the traced frames (end-diastole and end-systole) become images, with one ``left_ventricle``
mask each: side-A points + reversed side-B points filled (see ``_tracings``); ``Frame`` is the
0-based video frame. The official ``Split`` (TRAIN/VAL/TEST) is kept as ``split`` train/val/test;
patient id = video name (one video per patient). Unlike the released converter (one COCO file per
video, merged afterwards, no split), everything goes into one COCO file with the split kept.
"""

from __future__ import annotations

from pathlib import Path

from ultrasam_training.data.convert._tracings import CATEGORY, folder_samples
from ultrasam_training.data.convert._volume_pairs import find_root
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import convert_samples
from ultrasam_training.data.report import ConversionReport

DATASET = "echonet_dynamic"
CATEGORIES = (CATEGORY,)
URL = "https://echonet.github.io/dynamic/"
SPLITS = {"TRAIN": "train", "VAL": "val", "TEST": "test"}
EXPECTED = "Videos/<name>.avi + VolumeTracings.csv (+ FileList.csv), optionally inside EchoNet-Dynamic/"


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert the traced frames of EchoNet-Dynamic into ``out_dir``."""
    root = find_root(
        raw_dir,
        ["EchoNet-Dynamic"],
        lambda p: (p / "VolumeTracings.csv").is_file() and (p / "Videos").is_dir(),
        EXPECTED,
    )
    report = ConversionReport(DATASET)
    unknown_splits: set[str] = set()

    def fields(stem: str, row: dict[str, str] | None) -> dict:
        split = SPLITS.get(row["Split"].upper()) if row else None
        if row and split is None and row["Split"] not in unknown_splits:
            unknown_splits.add(row["Split"])
            report.note(f"FileList.csv Split {row['Split']!r} is not TRAIN/VAL/TEST: no split recorded for such videos")
        return {"patient_id": stem, "split": split}

    return convert_samples(
        DATASET,
        CATEGORIES,
        folder_samples(root, "", report, fields),
        out_dir,
        options,
        description="EchoNet-Dynamic traced echocardiography frames",
        url=URL,
        report=report,
        unit="frame",
    )
