"""UBPD, Ultrasound Brachial Plexus Dataset (ubpd.worldwidetracing.com) -> COCO.

Raw layout: JPG images and labelme ``.json`` files with the same file stem, anywhere under the
raw folder (side by side or in separate folders; found recursively, as the released converter).
Each labelme shape is rasterised with PIL (fill + outline, as the released converter) and its
pinyin label mapped: ``dongmai`` artery, ``jingmai`` vein, ``jirouzuzhi`` muscle, ``shenjing``
nerve, ``zhifang`` fat, ``jizhu`` spine (case and spaces ignored). Every connected component of a
shape is one instance. Unlike the released converter, which crashed on them, unknown labels and
shape types other than polygon/rectangle are left out and named in the report. The file-name
prefix before the first ``_`` is kept as the patient id (the naming other UBPD loaders split
patients by); a JSON whose ``imageHeight``/``imageWidth`` disagree with its image is skipped.
"""

from __future__ import annotations

from pathlib import Path

from ultrasam_training.data.convert._polygons import polygon_mask, read_json_file, rectangle_points
from ultrasam_training.data.convert.options import DEFAULTS, ConvertOptions
from ultrasam_training.data.convert.samples import Loaded, Sample, convert_samples, natural_key, read_image_file
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import image_size
from ultrasam_training.data.report import ConversionReport

DATASET = "ubpd"
LABELS = {
    "dongmai": "artery",
    "jingmai": "vein",
    "jirouzuzhi": "muscle",
    "shenjing": "nerve",
    "zhifang": "fat",
    "jizhu": "spine",
}
CATEGORIES = ("artery", "vein", "muscle", "nerve", "fat", "spine")
URL = "https://ubpd.worldwidetracing.com:9443/"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _load(image: Path, annotation: Path, source: str, report: ConversionReport) -> Loaded:
    read_image_file(image)
    height, width = image_size(image)
    data = read_json_file(annotation)
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise DatasetError(f"{annotation.name} is not a labelme file (no 'shapes' list)")
    declared = (data.get("imageHeight"), data.get("imageWidth"))
    if None not in declared and tuple(declared) != (height, width):
        raise DatasetError(f"{annotation.name} is for a {declared[1]}x{declared[0]} image, not {width}x{height}")
    masks, left_out = [], []
    for shape in data["shapes"]:
        label = str(shape.get("label", "")).strip().lower()
        kind = shape.get("shape_type") or "polygon"
        if label not in LABELS or kind not in ("polygon", "rectangle"):
            left_out.append(f"{label or '<empty>'} ({kind})")
            continue
        points = rectangle_points(shape.get("points")) if kind == "rectangle" else shape.get("points")
        masks.append((LABELS[label], polygon_mask(points, height, width)))
    if left_out:
        report.note(f"{source}: shapes left out (unknown label or shape type): {', '.join(sorted(left_out))}")
    return Loaded(image, masks)


def _index(files: list[Path], root: Path, what: str, report: ConversionReport) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in sorted(files, key=lambda p: natural_key(str(p))):
        if path.stem in index:
            report.skip(str(path.relative_to(root)), f"{what} stem also used by {index[path.stem].relative_to(root)}")
        else:
            index[path.stem] = path
    return index


def _samples(root: Path, annotations: dict[str, Path], report: ConversionReport):
    files = [p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    images = _index(files, root, "image", report)
    for stem in sorted(set(annotations) - set(images), key=natural_key):
        report.skip(str(annotations[stem].relative_to(root)), "labelme file without image")
    for stem in sorted(set(images) - set(annotations), key=natural_key):
        report.exclude(str(images[stem].relative_to(root)), "image without labelme file")
    for stem in sorted(set(images) & set(annotations), key=natural_key):
        source = str(images[stem].relative_to(root))
        yield Sample(
            source,
            lambda image=images[stem], ann=annotations[stem], source=source: _load(image, ann, source, report),
            patient_id=stem.split("_")[0] if "_" in stem else None,
        )


def convert(raw_dir: str | Path, out_dir: str | Path, options: ConvertOptions = DEFAULTS) -> ConversionReport:
    """Convert UBPD into ``out_dir`` (see the module docstring)."""
    root = Path(raw_dir)
    report = ConversionReport(DATASET)
    jsons = [p for p in root.rglob("*.json") if p.is_file()] if root.is_dir() else []
    if not jsons:
        raise DatasetError(f"{root}: no labelme .json files (expected JPG images + labelme JSON with the same stem)")
    annotations = _index(jsons, root, "labelme file", report)
    return convert_samples(
        DATASET,
        CATEGORIES,
        _samples(root, annotations, report),
        out_dir,
        options,
        description="UBPD: Ultrasound Brachial Plexus Dataset",
        url=URL,
        report=report,
    )
