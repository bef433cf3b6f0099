"""MMOTU-2D ovarian tumours (Zhao et al. 2022), in the COCO form the UltraSam release ships -> COCO.

Input: a folder with one COCO JSON (e.g. ``sample_coco_MMOTU2D.json``: string annotation ids,
compressed RLE, ``size`` written as a string) and its images (in the folder itself or in a
sub-folder such as ``sample_images/``). The file is re-emitted in this project's form: integer
ids, RLE ``counts`` as str with ``size`` [h, w], ``bbox``/``area`` recomputed from the RLE (given
values that disagree are reported), ``source_path`` = the original ``file_name``. Every image is
from the MMOTU-2D *test* split (``split: "test"``), as the file names ``test.MMOTU_2d__*`` say.
Annotations are kept as given (one object each), not re-split into components.

The raw MMOTU release (JPG images + PNG masks + ``*_cls.txt``) is not handled yet.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from ultrasam_training.data.coco import CocoBuilder, normalise_coco
from ultrasam_training.data.convert.output import DatasetOutput
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.images import image_size
from ultrasam_training.data.jsonio import read_json
from ultrasam_training.data.masks import rle_area, rle_bbox
from ultrasam_training.data.report import ConversionReport

DATASET = "mmotu_2d"
URL = "https://github.com/cv516Buaa/MMOTU_DS2Net"


def find_coco_file(raw_dir: str | Path) -> Path:
    """The single COCO JSON in ``raw_dir`` (a file path is accepted as is)."""
    raw_dir = Path(raw_dir)
    if raw_dir.is_file():
        return raw_dir
    candidates = sorted(p for p in raw_dir.glob("*.json") if p.is_file())
    if len(candidates) != 1:
        raise DatasetError(
            f"{raw_dir}: expected exactly one COCO .json (found {len(candidates)}); "
            "the raw MMOTU image+mask release is not supported yet"
        )
    return candidates[0]


def _find_image(folder: Path, file_name: str) -> Path | None:
    direct = folder / file_name
    if direct.is_file():
        return direct
    matches = sorted(folder.glob(f"*/{Path(file_name).name}"))
    return matches[0] if matches else None


def convert(
    raw_dir: str | Path,
    out_dir: str | Path,
    *,
    image_mode: str = "copy",
    overwrite: bool = False,
    split: str | None = "test",
    progress: bool = True,
) -> ConversionReport:
    """Re-emit a COCO-form MMOTU folder into ``out_dir`` (images copied, linked or referenced)."""
    coco_file = find_coco_file(raw_dir)
    folder = coco_file.parent
    raw = read_json(coco_file)
    coco = normalise_coco(raw, source=str(coco_file))
    output = DatasetOutput(DATASET, out_dir, image_mode=image_mode, overwrite=overwrite)
    categories = {c["id"]: c["name"] for c in coco["categories"]}
    builder = CocoBuilder(DATASET, categories, description="MMOTU-2D (UltraSam COCO release)", url=URL)
    report = ConversionReport(DATASET)
    by_image: dict[int, list[dict]] = {}
    for annotation in coco["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    for image in tqdm(coco["images"], desc="MMOTU", unit="img", disable=not progress):
        source = _find_image(folder, image["file_name"])
        if source is None:
            report.skip(image["file_name"], "image file not found next to the COCO file")
            continue
        try:
            height, width = image_size(source)
        except DatasetError as exc:
            report.skip(image["file_name"], str(exc))
            continue
        if (height, width) != (image["height"], image["width"]):
            report.skip(image["file_name"], f"file is {width}x{height}, COCO says {image['width']}x{image['height']}")
            continue
        file_name = output.place_image(source, report)
        image_id = builder.add_image(
            file_name, height, width, source_path=source.relative_to(folder).as_posix(), split=split
        )
        for annotation in by_image.get(image["id"], []):
            rle = annotation["segmentation"]
            if rle_area(rle) == 0:
                report.skip(f"{image['file_name']} annotation {annotation.get('source_id', annotation['id'])}", "empty mask")
                continue
            given_bbox, given_area = annotation.get("bbox"), annotation.get("area")
            if given_area != rle_area(rle) or [float(v) for v in given_bbox] != rle_bbox(rle):
                report.note(f"{image['file_name']}: given bbox/area disagree with the mask; recomputed")
            builder.add_rle(
                image_id, rle, annotation["category_id"], source_id=annotation.get("source_id", annotation["id"])
            )
            report.instances += 1
        if not by_image.get(image["id"]):
            report.empty.append(image["file_name"])
        report.images += 1
    output.finish(builder.to_dict(), report)
    return report
