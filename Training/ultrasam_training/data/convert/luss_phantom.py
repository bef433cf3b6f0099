"""LUSS phantom, lung ultrasound artefact segmentation on a phantom (Howell & McLaughlan 2024,
Leeds data archive 1263, doi 10.5518/1485) -> COCO.

Raw layout (the archive extracted; ``data-3/`` may be the folder given or one level down)::

    data-3/{train,test}/images/<clip>-F<n>.png
    data-3/{train,test}/masks/<clip>-F<n>.png      # pixel value = class id

A flat ``images/`` + ``masks/`` pair of folders (no split) is accepted too. Label values:
1 ``rib``, 2 ``pleural_line``, 3 ``a_line``, 4 ``b_line``, 5 ``b_line_confluence`` (the released
converter's ``A_line``/``B_line``/``B_line_confluence`` in the catalogue's lower case); every
connected component is one instance. Other values are reported, never dropped silently. The
published train/test folders are kept as ``split``, the cine clip a frame comes from (name before
``-F``) as ``case_id`` so frames of one clip stay together. The cine clips themselves
(``VideoClips/``, unannotated) are not converted.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Sample, convert_samples, load_label_map, natural_key
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.report import ConversionReport

DATASET = "luss_phantom"
CATEGORIES = ("rib", "pleural_line", "a_line", "b_line", "b_line_confluence")
LABELS = {index + 1: name for index, name in enumerate(CATEGORIES)}
SPLITS = ("train", "test")
URL = "https://archive.researchdata.leeds.ac.uk/1263/"


def find_folders(raw_dir: str | Path) -> list[tuple[str | None, Path]]:
    """``[(split, folder with images/ and masks/), ...]`` under ``raw_dir`` or its ``data-3``/``data``."""
    raw_dir = Path(raw_dir)
    for root in (raw_dir, raw_dir / "data-3", raw_dir / "data"):
        folders = [(split, root / split) for split in SPLITS if (root / split / "images").is_dir()]
        if folders:
            return folders
        if (root / "images").is_dir() and (root / "masks").is_dir():
            return [(None, root)]
    raise DatasetError(f"{raw_dir}: expected data-3/{{train,test}}/images/ and masks/ (label PNGs)")


def _samples(raw_dir: Path, folders: list[tuple[str | None, Path]], report: ConversionReport):
    for split, folder in folders:
        masks = {p.stem: p for p in (folder / "masks").glob("*.png")}
        images = {p.stem: p for p in (folder / "images").glob("*.png")}
        for stem in sorted(set(masks) - set(images), key=natural_key):
            report.skip(str(masks[stem].relative_to(raw_dir)), "mask without image")
        for stem in sorted(images, key=natural_key):
            source = str(images[stem].relative_to(raw_dir))
            mask = masks.get(stem, folder / "masks" / f"{stem}.png")  # a missing mask is a skipped pair
            load = partial(load_label_map, images[stem], mask, LABELS, source, report, "no LUSS class")
            yield Sample(source, load, case_id=stem.rsplit("-F", 1)[0] if "-F" in stem else None, split=split)


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert the LUSS phantom data into ``out_dir`` (see the module docstring)."""
    folders = find_folders(raw_dir)
    report = ConversionReport(DATASET)
    return convert_samples(
        DATASET,
        CATEGORIES,
        _samples(Path(raw_dir), folders, report),
        out_dir,
        options,
        description="LUSS phantom: lung ultrasound artefact segmentation",
        url=URL,
        report=report,
    )
