"""EchoCP contrast transthoracic echocardiography for patent foramen ovale (Wang et al., MICCAI 2021) -> COCO.

Raw layout (``EchoCP_dataset``): ``<NNN>_<r|v>_image.nii.gz`` with ``<NNN>_<r|v>_label.nii.gz``
(patient NNN at rest or during the Valsalva manoeuvre). Frames (axis 0 = time) with a chamber
annotation become images; every non-zero label value is ``chamber`` as in the released
converter. Image and mask are flipped over both axes (mmcv's ``diagonal`` flip, which the
catalogue called a transpose) as released. Patient id ``NNN``, case id ``NNN_r``; the
manoeuvre is kept as ``action`` (``rest``/``valsalva``). The PFO grades of the spreadsheet that
ships with the release are not read (no spreadsheet reader in the environment). Unlike the
released converter, intensities are windowed once per sequence.
"""

from __future__ import annotations

import re
from pathlib import Path

from ultrasam_training.data.convert._volume_pairs import VolumePair, convert_pairs, find_root
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.report import ConversionReport

DATASET = "echocp"
CATEGORIES = ("chamber",)
URL = "https://www.kaggle.com/datasets/xiaoweixumedicalai/echocp"
ACTIONS = {"r": "rest", "v": "valsalva"}
_NAME = re.compile(r"^(?P<patient>\d+)_(?P<action>[rv])_image\.nii\.gz$", re.IGNORECASE)
EXPECTED = "<NNN>_<r|v>_image.nii.gz + <NNN>_<r|v>_label.nii.gz, optionally inside EchoCP_dataset/"


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert EchoCP sequences into ``out_dir`` (one image per annotated frame)."""
    root = find_root(raw_dir, ["EchoCP_dataset"], lambda p: any(p.glob("*_image.nii.gz")), EXPECTED)
    report = ConversionReport(DATASET)
    pairs = []
    for image in sorted(root.glob("*_image.nii.gz")):
        match = _NAME.match(image.name)
        if match is None:
            report.skip(image.name, "name is not <NNN>_<r|v>_image.nii.gz")
            continue
        label = image.with_name(image.name.replace("_image.nii.gz", "_label.nii.gz"))
        pairs.append(
            VolumePair(
                image,
                label if label.is_file() else None,
                image.name,
                patient_id=match["patient"],
                case_id=f"{match['patient']}_{match['action'].lower()}",
                extra={"action": ACTIONS[match["action"].lower()]},
            )
        )
    return convert_pairs(
        DATASET,
        CATEGORIES,
        pairs,
        out_dir,
        options,
        report=report,
        description="EchoCP contrast echocardiography",
        url=URL,
        expected=EXPECTED,
        mapping="chamber",
        unit="frame",
        flip_how="diagonal",
    )
