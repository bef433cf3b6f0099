"""FALLMUD, lower-leg muscle ultrasound with aponeurosis and fascicle masks (CEA, kalisteo.cea.fr) -> COCO.

Raw layout (``FALLMUD.zip`` extracted)::

    FALLMUD/{NeilCronin,RyanCunningham}/images/<name>.<ext>
    FALLMUD/{NeilCronin,RyanCunningham}/{aponeurosis_masks,fascicle_masks}/<name>.<any ext>

Masks are read as grey and thresholded at >= 100 (they are lossy-compressed, so edges take values
between 0 and 255): ``aponeurosis`` and ``fascicle``; every connected component is one instance.
The acquisition centre is kept as ``centre``. An image needs both masks (as in the released
converter); one without is reported as skipped.

Differences from the released converter:

* **Fascicles are produced.** Its threshold set both branches to 0, so no fascicle was ever annotated.
* Kept: an aponeurosis mask whose shape differs from its image (the RyanCunningham masks are
  stored transposed) is rotated by 90 degrees clockwise (mmcv ``imrotate(mask, 90, auto_bound=True)``)
  and the report counts how often. The fascicle mask gets the same rotation when its shape
  differs (the released converter did not rotate it, which would have broken the pair had
  fascicles been kept). A mask whose shape still differs is a skipped pair.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples, natural_key, read_image_file
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import image_size, read_array
from ultrasam_training.data.report import ConversionReport

DATASET = "fallmud"
CATEGORIES = ("aponeurosis", "fascicle")
CENTRES = ("NeilCronin", "RyanCunningham")
MASK_FOLDERS = (("aponeurosis", "aponeurosis_masks"), ("fascicle", "fascicle_masks"))
THRESHOLD = 100
URL = "https://kalisteo.cea.fr/index.php/fallmud/"


def find_root(raw_dir: str | Path) -> Path:
    """``raw_dir`` or ``raw_dir/FALLMUD``: the folder holding the centre folders."""
    raw_dir = Path(raw_dir)
    for candidate in (raw_dir, raw_dir / "FALLMUD"):
        if any((candidate / centre / "images").is_dir() for centre in CENTRES):
            return candidate
    raise DatasetError(f"{raw_dir}: expected FALLMUD/{{{','.join(CENTRES)}}}/images/ with *_masks/ folders")


def _grey(path: Path) -> np.ndarray:
    array = read_array(path)
    if array.ndim == 3:  # luminance (the masks are grey stored as RGB, so the weights hardly matter)
        array = np.rint(array[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    return array


def _load(image: Path, masks: list[tuple[str, Path]], rotated: list[str], source: str) -> Loaded:
    read_image_file(image)
    shape = image_size(image)
    loaded = []
    for name, path in masks:
        mask = _grey(path)
        if mask.shape != shape and mask.shape[::-1] == shape:
            mask = np.rot90(mask, k=-1)  # clockwise, as mmcv imrotate(angle=90)
            rotated.append(f"{source} ({name})")
        loaded.append((name, mask >= THRESHOLD))
    return Loaded(image, loaded)


def _samples(root: Path, report: ConversionReport, rotated: list[str]):
    for centre in CENTRES:
        folder = root / centre
        if not (folder / "images").is_dir():
            report.note(f"centre folder {centre}/images/ is missing")
            continue
        masks = {
            name: {p.stem: p for p in (folder / sub).iterdir() if p.is_file()} if (folder / sub).is_dir() else {}
            for name, sub in MASK_FOLDERS
        }
        images = sorted((p for p in (folder / "images").iterdir() if p.is_file()), key=lambda p: natural_key(p.name))
        for image in images:
            source = f"{centre}/images/{image.name}"
            missing = [sub for name, sub in MASK_FOLDERS if image.stem not in masks[name]]
            if missing:
                report.skip(source, f"no mask in {', '.join(missing)}/")
                continue
            pairs = [(name, masks[name][image.stem]) for name, _ in MASK_FOLDERS]
            yield Sample(
                source,
                lambda image=image, pairs=pairs, source=source: _load(image, pairs, rotated, source),
                extra={"centre": centre},
            )
    if rotated:
        report.note(
            f"{len(rotated)} masks rotated 90 degrees clockwise to fit their image: {', '.join(rotated[:5])}"
            + (" ..." if len(rotated) > 5 else "")
        )


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert FALLMUD into ``out_dir`` (see the module docstring)."""
    root = find_root(raw_dir)
    report = ConversionReport(DATASET)
    return convert_samples(
        DATASET,
        CATEGORIES,
        _samples(root, report, []),
        out_dir,
        options,
        description="FALLMUD: muscle ultrasound, aponeuroses and fascicles",
        url=URL,
        report=report,
    )
