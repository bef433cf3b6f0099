"""AUL, Annotated Ultrasound Liver (Xu et al. 2023, zenodo 7272660) -> COCO.

Raw layout (``AUL.zip`` and its ``Benign.zip``/``Malignant.zip``/``Normal.zip`` extracted; the
inner archives unpack to ``<Class>/<Class>/``, and a single ``<Class>/`` level works too)::

    <Class>/[<Class>/]image/<n>.jpg
    <Class>/[<Class>/]segmentation/{liver,mass,outline}/<n>.json   # [[x, y], ...] polygon

``liver`` and ``mass`` polygons are rasterised with PIL (fill + outline, as the released
converter) into the categories ``liver`` and ``mass``; every connected component is one instance.
``outline`` (the ultrasound field of view, no anatomy) is left out, as in the released converter,
and counted in the report. The class folder is kept as the image-level label
(``benign``/``malignant``/``normal``; normal images have a liver but no mass). A polygon file
without an image is reported as skipped; a broken polygon file skips its image.
"""

from __future__ import annotations

from pathlib import Path

from ultrasam_training.data.convert._polygons import polygon_mask, read_json_file
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples, natural_key, read_image_file
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import image_size
from ultrasam_training.data.report import ConversionReport

DATASET = "aul"
CATEGORIES = ("liver", "mass")
CLASSES = ("Benign", "Malignant", "Normal")
URL = "https://zenodo.org/records/7272660"
SKIPPED_STRUCTURES = ("outline",)


def _class_dir(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / name / name):
        if (candidate / "image").is_dir():
            return candidate
    return None


def find_root(raw_dir: str | Path) -> Path:
    """The folder holding ``Benign/``, ``Malignant/``, ``Normal/`` (``raw_dir`` or ``raw_dir/AUL``)."""
    raw_dir = Path(raw_dir)
    for candidate in (raw_dir, raw_dir / "AUL"):
        if any(_class_dir(candidate, name) for name in CLASSES):
            return candidate
    zipped = sorted(p.name for p in raw_dir.glob("*.zip"))
    hint = f" (found {', '.join(zipped)}: extract them first)" if zipped else ""
    raise DatasetError(f"{raw_dir}: no <Class>/image/ folders for Benign/Malignant/Normal{hint}")


def _polygons(data: object) -> list:
    """One polygon ``[[x, y], ...]`` or a list of them."""
    if isinstance(data, list) and data and isinstance(data[0], list) and data[0] and isinstance(data[0][0], list):
        return data
    return [data]


def _load(image: Path, jsons: list[tuple[str, Path]]) -> Loaded:
    read_image_file(image)
    height, width = image_size(image)
    masks = [
        (name, polygon_mask(points, height, width))
        for name, path in jsons
        for points in _polygons(read_json_file(path))
    ]
    return Loaded(image, masks)


def _samples(root: Path, report: ConversionReport):
    for class_name in CLASSES:
        folder = _class_dir(root, class_name)
        if folder is None:
            report.note(f"class folder {class_name}/ is missing")
            continue
        images = {p.stem: p for p in (folder / "image").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
        polygons = {name: {p.stem: p for p in (folder / "segmentation" / name).glob("*.json")} for name in CATEGORIES}
        for skipped in SKIPPED_STRUCTURES:
            count = len(list((folder / "segmentation" / skipped).glob("*.json")))
            if count:
                report.note(f"{class_name}: {count} {skipped} polygons (field of view) left out")
        for name, files in polygons.items():
            for stem in sorted(set(files) - set(images), key=natural_key):
                report.skip(str(files[stem].relative_to(root)), f"{name} polygon without image")
        for stem in sorted(images, key=natural_key):
            jsons = [(name, polygons[name][stem]) for name in CATEGORIES if stem in polygons[name]]
            yield Sample(
                str(images[stem].relative_to(root)),
                lambda image=images[stem], jsons=jsons: _load(image, jsons),
                class_labels=[class_name.lower()],
            )


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert AUL into ``out_dir`` (see the module docstring)."""
    root = find_root(raw_dir)
    report = ConversionReport(DATASET)
    return convert_samples(
        DATASET,
        CATEGORIES,
        _samples(root, report),
        out_dir,
        options,
        description="AUL: Annotated Ultrasound Liver",
        url=URL,
        report=report,
    )
