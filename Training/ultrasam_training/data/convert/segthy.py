"""SegThy: tracked 3-D freehand thyroid ultrasound of volunteers (TU Munich, CAMP) -> COCO.

Raw layout: ``US_data/US_volunteer_dataset/ground_truth_data/US/<NNN>_P<k>_<n>_<side>_US.nii``
with ``.../US_thyroid_label/<NNN>_P<k>_<n>_<side>.nii`` (``.nii.gz`` accepted too); the raw folder
may be any level down to ``ground_truth_data``. The MRI part of the release is not used.
Axial slices with a label become images; labels 1 thyroid, 2 carotid, 3 jugular (other values
are reported, not guessed); image and mask are flipped over both axes (mmcv's ``diagonal`` flip,
which the catalogue called a transpose) as released. Patient id: the volunteer ``P<k>``; case id
the file name. Unlike the released converter, intensities are windowed once per volume instead
of ``astype(uint8)``.
"""

from __future__ import annotations

import re
from pathlib import Path

from ultrasam_training.data.convert._volume_pairs import VolumePair, convert_pairs, find_root, nifti_stem, pair_files
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.report import ConversionReport

DATASET = "segthy"
CATEGORIES = ("thyroid", "carotid", "jugular")
URL = "https://www.cs.cit.tum.de/camp/publications/segthy-dataset/"
MAPPING = dict(enumerate(CATEGORIES, start=1))
GROUND_TRUTH = "US_data/US_volunteer_dataset/ground_truth_data"
EXPECTED = f"{GROUND_TRUTH}/US/<id>_US.nii + {GROUND_TRUTH}/US_thyroid_label/<id>.nii"
_VOLUNTEER = re.compile(r"^\d+_(P\d+)_", re.IGNORECASE)


def _niftis(folder: Path, suffix: str = "") -> dict[str, Path]:
    """``{id: path}`` of the NIfTI files in ``folder`` whose stem ends with ``suffix`` (removed from the id)."""
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.glob("*.nii*"):
        stem = nifti_stem(path)
        if stem.endswith(suffix):
            found[stem[: len(stem) - len(suffix)]] = path
    return found


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert the SegThy ultrasound volumes into ``out_dir`` (annotated axial slices only)."""
    levels = [GROUND_TRUTH, *(GROUND_TRUTH.split("/", n)[-1] for n in (1, 2)), f"SegThy/{GROUND_TRUTH}"]
    root = find_root(raw_dir, levels, lambda p: (p / "US").is_dir(), EXPECTED)
    report = ConversionReport(DATASET)
    images, labels = _niftis(root / "US", "_US"), _niftis(root / "US_thyroid_label")
    pairs = []
    for case, image, label in pair_files(images, labels, root, report):
        volunteer = _VOLUNTEER.match(case)
        pairs.append(
            VolumePair(
                image,
                label,
                image.relative_to(root).as_posix(),
                case_id=case,
                patient_id=volunteer[1] if volunteer else case,
            )
        )
    return convert_pairs(
        DATASET,
        CATEGORIES,
        pairs,
        out_dir,
        options,
        report=report,
        description="SegThy thyroid ultrasound volumes",
        url=URL,
        expected=EXPECTED,
        mapping=MAPPING,
        flip_how="diagonal",
    )
