"""From raw datasets to the class-agnostic train/val/test COCO files training and evaluation read.

Chain per dataset: convert -> split (fixed lists from ``splits.json`` when given, otherwise a
seeded patient-level train/val split that keeps official val/test) -> class-agnostic -> small-
object filter -> merge -> validate. Every removal is written to ``annotations/build_report.json``.

Output layout (``OUT``):

* ``OUT/<dataset>/images/``, ``OUT/<dataset>/annotations/<dataset>__coco.json`` (per dataset, all classes);
* ``OUT/annotations/{train,val,test}.json`` and ``test.<dataset>.json`` (``build_all``), or
  ``train.json``, ``val.json``, ``test_busi.json``, ``test_hc18.json``, ``test_mmotu.json``
  (``build_shared_splits``). Relative ``file_name`` entries resolve against ``OUT``; images
  referenced in place have absolute names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ultrasam_training.data import registry
from ultrasam_training.data.agnostic import make_class_agnostic
from ultrasam_training.data.coco import write_coco
from ultrasam_training.data.convert import run_converter
from ultrasam_training.data.convert.options import ConvertOptions
from ultrasam_training.data.errors import DatasetError, OutputExistsError
from ultrasam_training.data.filters import MIN_FRACTION, MIN_PIXELS, FilterReport, filter_small_objects
from ultrasam_training.data.jsonio import read_json, write_json
from ultrasam_training.data.merge import merge_cocos
from ultrasam_training.data.report import ConversionReport
from ultrasam_training.data.split import SplitResult, apply_splits, split_train_val
from ultrasam_training.data.validate import validate

log = logging.getLogger(__name__)

SHARED_OUTPUTS = ("train", "val", "test_busi", "test_hc18", "test_mmotu")
IF_EXISTS = ("error", "reuse", "overwrite")


@dataclass
class BuildResult:
    """Paths written and everything that was removed or looked wrong on the way."""

    paths: dict[str, Path]
    conversions: list[ConversionReport] = field(default_factory=list)
    filtered: list[FilterReport] = field(default_factory=list)
    split_notes: list[str] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [report.summary() for report in self.conversions]
        lines += [report.summary() for report in self.filtered if report.removed]
        lines += self.split_notes
        for name, path in self.paths.items():
            lines.append(f"{name}: {path}")
        for name, problems in self.problems.items():
            if problems:
                lines.append(f"{name}: {len(problems)} validation problems, first: {problems[0]}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "paths": {k: str(v) for k, v in self.paths.items()},
            "conversions": [r.to_dict() for r in self.conversions],
            "filtered": [r.to_dict() for r in self.filtered],
            "split_notes": self.split_notes,
            "problems": self.problems,
        }


def find_raw_dirs(raw_root: str | Path) -> dict[str, Path]:
    """``{dataset key: folder}`` for every convertible dataset present under ``raw_root``.

    A folder matches a dataset when its name is the key, the name or an alias (case and
    punctuation ignored), e.g. ``busi``, ``BUSI``, ``Dataset_BUSI_with_GT``, ``mmotu_sample``.
    """
    raw_root = Path(raw_root)
    if not raw_root.is_dir():
        raise DatasetError(f"raw data folder not found: {raw_root}")
    found: dict[str, Path] = {}
    for child in sorted(p for p in raw_root.iterdir() if p.is_dir()):
        try:
            info = registry.get(child.name)
        except registry.UnknownDatasetError:
            continue
        if info.converter_module and info.key not in found:
            found[info.key] = child
    return found


def _prepare_part(
    coco: Mapping[str, Any], name: str, *, min_pixels: int, min_fraction: float
) -> tuple[dict, FilterReport]:
    agnostic = make_class_agnostic(coco)
    filtered, report = filter_small_objects(agnostic, min_pixels=min_pixels, min_fraction=min_fraction)
    report.rule = f"{name}: {report.rule}"
    return filtered, report


def _split_notes(name: str, result: SplitResult) -> list[str]:
    notes = [f"{name}: split {result.counts()}"]
    for split, paths in result.missing.items():
        notes.append(
            f"{name}: {len(paths)} {split} paths of the split list are not in the converted set (e.g. {paths[0]})"
        )
    if result.unassigned:
        notes.append(f"{name}: {len(result.unassigned)} converted images are in no split list and were left out")
    return notes


def _check_outputs(paths: Mapping[str, Path], if_exists: str) -> bool:
    """True when existing outputs should be reused as they are."""
    if if_exists not in IF_EXISTS:
        raise DatasetError(f"if_exists must be one of {IF_EXISTS}, not {if_exists!r}")
    existing = [p for p in paths.values() if p.exists()]
    if if_exists == "reuse" and len(existing) == len(paths):
        return True
    if existing and if_exists == "error":
        raise OutputExistsError(f"{existing[0]} exists; use if_exists='overwrite' or 'reuse'")
    return False


def _write_outputs(
    outputs: Mapping[str, Sequence[tuple[dict, Path]]],
    out_root: Path,
    file_names: Mapping[str, str],
    result: BuildResult,
) -> None:
    for name, parts in outputs.items():
        if not parts:
            continue
        merged = merge_cocos([c for c, _ in parts], image_roots=[root for _, root in parts], out_image_root=out_root)
        path = write_coco(merged, out_root / "annotations" / file_names[name], overwrite=True)
        result.paths[name] = path
        result.problems[name] = validate(path, check_files=True)


def build_shared_splits(
    data_root: str | Path,
    out_root: str | Path,
    *,
    if_exists: str = "error",
    min_pixels: int = MIN_PIXELS,
    min_fraction: float = MIN_FRACTION,
    progress: bool = False,
) -> dict[str, Path]:
    """Class-agnostic train/val/test files from the project's shared real data (``../shared/data``).

    BUSI and HC18 are split by ``data_root/splits.json`` (BUSI normal images have no lesion and
    are excluded); the MMOTU-2D sample is an extra test set. Images are referenced in place
    (absolute ``file_name``), nothing is copied. Returns ``{"train", "val", "test_busi",
    "test_hc18", "test_mmotu"}`` -> path under ``out_root/annotations/``.
    ``if_exists``: ``error`` (default), ``reuse`` (return existing outputs untouched) or ``overwrite``.
    """
    data_root, out_root = Path(data_root), Path(out_root)
    file_names = {name: f"{name}.json" for name in SHARED_OUTPUTS}
    paths = {name: out_root / "annotations" / file_names[name] for name in SHARED_OUTPUTS}
    if _check_outputs(paths, if_exists):
        return paths
    splits = read_json(data_root / "splits.json")
    overwrite = if_exists == "overwrite"
    result = BuildResult(paths={})
    outputs: dict[str, list[tuple[dict, Path]]] = {name: [] for name in SHARED_OUTPUTS}
    sources = (("busi", data_root / "busi"), ("hc18", data_root / "hc18"), ("mmotu_2d", data_root / "mmotu_sample"))
    options = ConvertOptions(image_mode="reference", overwrite=overwrite, progress=progress)
    for key, raw_dir in sources:
        dataset_root = out_root / key
        report = run_converter(key, raw_dir, dataset_root, options)
        result.conversions.append(report)
        coco = report.coco
        if key == "mmotu_2d":
            part, filter_report = _prepare_part(coco, "test_mmotu", min_pixels=min_pixels, min_fraction=min_fraction)
            result.filtered.append(filter_report)
            outputs["test_mmotu"].append((part, dataset_root))
            continue
        if key not in splits:
            raise DatasetError(f"{data_root / 'splits.json'} has no {key!r} section")
        split = apply_splits(coco, splits[key])
        result.split_notes += _split_notes(key, split)
        for split_name, part in split.parts.items():
            target = split_name if split_name in ("train", "val") else f"test_{key}"
            prepared, filter_report = _prepare_part(
                part, f"{key}/{split_name}", min_pixels=min_pixels, min_fraction=min_fraction
            )
            result.filtered.append(filter_report)
            outputs[target].append((prepared, dataset_root))
    _write_outputs(outputs, out_root, file_names, result)
    write_json(result.to_dict(), out_root / "annotations" / "build_report.json", overwrite=True, indent=1)
    broken = {name: problems for name, problems in result.problems.items() if problems}
    if broken:
        name, problems = next(iter(broken.items()))
        raise DatasetError(f"{paths[name]} failed validation ({len(problems)} problems), first: {problems[0]}")
    log.info("%s", result.summary())
    return result.paths


def _fixed_sections(splits: Any) -> dict[str, Mapping[str, Sequence[str]]]:
    """``splits.json`` sections keyed by registry key (sections may use any dataset alias)."""
    if not isinstance(splits, Mapping):
        raise DatasetError("a splits file must hold {dataset: {split: [paths]}}")
    sections = {}
    for name, section in splits.items():
        if not isinstance(section, Mapping):
            raise DatasetError(f"splits section {name!r} must map split names to path lists")
        sections[registry.get(name).key] = section
    return sections


def build_all(
    raw_root: str | Path,
    out_root: str | Path,
    *,
    seed: int = 0,
    val_fraction: float = 0.05,
    splits_json: str | Path | None = None,
    image_mode: str = "copy",
    overwrite: bool = False,
    min_pixels: int = MIN_PIXELS,
    min_fraction: float = MIN_FRACTION,
    progress: bool = True,
) -> BuildResult:
    """Convert every dataset found under ``raw_root`` and write merged agnostic train/val/test files.

    Datasets with a section in ``splits_json`` use those fixed lists; the others get a seeded
    patient-level split (``val_fraction`` of each dataset to val; official val/test kept).
    """
    raw_root, out_root = Path(raw_root), Path(out_root)
    found = find_raw_dirs(raw_root)
    if not found:
        expected = ", ".join(info.key for info in registry.with_converter())
        raise DatasetError(f"no convertible dataset folder under {raw_root} (expected one of: {expected})")
    final_names = {"train": "train.json", "val": "val.json", "test": "test.json"}
    annotations_dir = out_root / "annotations"
    if not overwrite and annotations_dir.is_dir() and any(annotations_dir.glob("*.json")):
        raise OutputExistsError(f"{annotations_dir} already holds COCO files; pass overwrite=True (--overwrite)")
    fixed = _fixed_sections(read_json(splits_json)) if splits_json else {}
    result = BuildResult(paths={})
    outputs: dict[str, list[tuple[dict, Path]]] = {"train": [], "val": [], "test": []}
    options = ConvertOptions(image_mode=image_mode, overwrite=overwrite, progress=progress)
    for key, raw_dir in found.items():
        dataset_root = out_root / key
        report = run_converter(key, raw_dir, dataset_root, options)
        result.conversions.append(report)
        section = fixed.get(key)
        if section:
            split = apply_splits(report.coco, section)
        else:
            split = split_train_val(report.coco, val_fraction=val_fraction, seed=seed)
        result.split_notes += _split_notes(key, split)
        for split_name, part in split.parts.items():
            if split_name not in outputs:
                raise DatasetError(f"{key}: unknown split name {split_name!r} in {splits_json}")
            prepared, filter_report = _prepare_part(
                part, f"{key}/{split_name}", min_pixels=min_pixels, min_fraction=min_fraction
            )
            result.filtered.append(filter_report)
            if prepared["images"]:
                outputs[split_name].append((prepared, dataset_root))
            if split_name == "test" and prepared["images"]:
                final_names[f"test.{key}"] = f"test.{key}.json"
                outputs[f"test.{key}"] = [(prepared, dataset_root)]
    _write_outputs(outputs, out_root, final_names, result)
    write_json(result.to_dict(), out_root / "annotations" / "build_report.json", overwrite=True, indent=1)
    return result
