"""``ultrasam data ...``: list, convert, build, validate, stats (plus agnostic, filter, shared)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ultrasam_training.data import registry
from ultrasam_training.data.errors import DatasetError

if TYPE_CHECKING:
    from ultrasam_training.data.convert.options import ConvertOptions


def _image_mode(args: argparse.Namespace) -> str:
    return "reference" if args.in_place else "symlink" if args.link else "copy"


def _add_image_mode(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--link", action="store_true", help="symlink images instead of copying them")
    group.add_argument("--in-place", action="store_true", help="reference original images by absolute path (no copy)")


def _cmd_list(args: argparse.Namespace) -> int:
    datasets = registry.all_datasets()
    if args.json:
        print(json.dumps([info.to_dict() for info in datasets], indent=1))
        return 0
    print(f"{'key':<30} {'name':<30} {'organ':<28} {'converter':<9} licence")
    for info in datasets:
        status = "yes" if info.converter_module else "-"
        print(f"{info.key:<30} {info.name:<30} {info.organ:<28} {status:<9} {info.licence}")
    print(
        f"{len(datasets)} datasets, {len(registry.with_converter())} convertible (plus 'generic' for image/mask folders)"
    )
    return 0


def _generic_options(args: argparse.Namespace) -> dict:
    from ultrasam_training.data.convert.generic import parse_category

    options = {
        "dataset": args.dataset or "generic",
        "image_dir": args.image_dir,
        "mask_dir": args.mask_dir,
        "mask_pattern": args.mask_pattern,
        "threshold": args.threshold,
        "recursive": args.recursive,
        "patient_pattern": args.patient_pattern,
        "class_from_folder": args.class_from_folder,
    }
    if args.category:
        options["categories"] = dict(parse_category(text) for text in args.category)
    return options


def _parse_options(texts: list[str]) -> dict:
    """``["fold=2", "frame_offset=0", "view=sagittal"]`` -> keyword arguments (Python literals, else strings)."""
    import ast

    options = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key.strip().isidentifier():
            raise DatasetError(f"--option {text!r} must read NAME=VALUE")
        try:
            options[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key.strip()] = value
    return options


def _convert_options(args: argparse.Namespace) -> ConvertOptions:
    """The one :class:`ConvertOptions` of a ``convert`` command line (flags, ``--option``s, generic flags)."""
    from ultrasam_training.data.convert import GENERIC
    from ultrasam_training.data.convert.options import ConvertOptions

    if args.keep_normal:
        print(
            "--keep-normal is deprecated: use --keep-empty (BUSI's normal images are the ones without a lesion)",
            file=sys.stderr,
        )
    keywords: dict = {
        "image_mode": _image_mode(args),
        "overwrite": args.overwrite,
        "limit": args.limit,
        "keep_empty": args.keep_empty or args.keep_normal,
    }
    keywords.update(_parse_options(args.option or []))
    if args.name == GENERIC:
        keywords.update(_generic_options(args))
    elif args.dataset or args.category:
        raise DatasetError("--dataset/--category apply to the 'generic' converter only")
    return ConvertOptions.from_keywords(**keywords)


def _cmd_convert(args: argparse.Namespace) -> int:
    from ultrasam_training.data.convert import run_converter

    report = run_converter(args.name, args.raw_dir, args.out_dir, _convert_options(args))
    print(report.summary())
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from ultrasam_training.data.build import build_all
    from ultrasam_training.data.stats import compute_stats, format_stats, plot_stats
    from ultrasam_training.data.jsonio import read_json

    result = build_all(
        args.raw_root,
        args.out_root,
        seed=args.seed,
        val_fraction=args.val_fraction,
        splits_json=args.splits,
        image_mode=_image_mode(args),
        overwrite=args.overwrite,
        min_pixels=args.min_pixels,
        min_fraction=args.min_fraction,
    )
    print(result.summary())
    per_split = [read_json(result.paths[name]) for name in ("train", "val", "test") if name in result.paths]
    stats = compute_stats(per_split)
    print(format_stats(stats))
    print(f"plot: {plot_stats(stats, Path(args.out_root) / 'stats.png', overwrite=True)}")
    return 1 if any(result.problems.values()) else 0


def _cmd_shared(args: argparse.Namespace) -> int:
    from ultrasam_training.data.build import build_shared_splits

    paths = build_shared_splits(args.data_root, args.out_root, if_exists="overwrite" if args.overwrite else "error")
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from ultrasam_training.data.validate import validate

    problems = validate(args.coco, check_files=args.check_files, portable_ids=not args.allow_any_ids)
    for problem in problems[: args.max_shown]:
        print(problem)
    if len(problems) > args.max_shown:
        print(f"... and {len(problems) - args.max_shown} more")
    print(f"{args.coco}: {'OK' if not problems else f'{len(problems)} problems'}", file=sys.stderr)
    return 1 if problems else 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from ultrasam_training.data.stats import format_stats, plot_stats, stats_of_root

    stats = stats_of_root(args.root)
    print(format_stats(stats))
    root = Path(args.root)
    plot = Path(args.plot) if args.plot else (root if root.is_dir() else root.parent) / "stats.png"
    print(f"plot: {plot_stats(stats, plot, overwrite=args.overwrite)}")
    return 0


def _cmd_agnostic(args: argparse.Namespace) -> int:
    from ultrasam_training.data.agnostic import make_class_agnostic
    from ultrasam_training.data.coco import load_coco, write_coco

    if Path(args.input).resolve() == Path(args.output).resolve():
        raise DatasetError("write the class-agnostic file to a new path, not over its input")
    coco = make_class_agnostic(load_coco(args.input))
    print(
        f"{write_coco(coco, args.output, overwrite=args.overwrite)}: {len(coco['annotations'])} instances, 1 category"
    )
    return 0


def _cmd_filter(args: argparse.Namespace) -> int:
    from ultrasam_training.data.coco import load_coco, write_coco
    from ultrasam_training.data.filters import cap_instances, filter_small_objects

    if Path(args.input).resolve() == Path(args.output).resolve():
        raise DatasetError("write the filtered file to a new path, not over its input")
    coco, report = filter_small_objects(
        load_coco(args.input), min_pixels=args.min_pixels, min_fraction=args.min_fraction
    )
    print(report.summary())
    if args.max_instances:
        coco, cap_report = cap_instances(coco, args.max_instances, policy=args.cap_policy)
        print(cap_report.summary())
    print(write_coco(coco, args.output, overwrite=args.overwrite))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ultrasam data`` and its sub-commands."""
    from ultrasam_training.data.filters import MIN_FRACTION, MIN_PIXELS

    parser = subparsers.add_parser("data", help="dataset registry, conversion to COCO, splits, checks")
    commands = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    p = commands.add_parser("list", help="the 43 US-43d datasets and which can be converted")
    p.add_argument("--json", action="store_true", help="full registry as JSON")
    p.set_defaults(func=_cmd_list)

    p = commands.add_parser("convert", help="convert one raw dataset (or 'generic' image/mask folders) to COCO")
    p.add_argument("name", help="dataset key (see 'ultrasam data list') or 'generic'")
    p.add_argument("raw_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    _add_image_mode(p)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--limit", type=int, help="convert only the first N images")
    p.add_argument("--keep-normal", action="store_true", help="deprecated: same as --keep-empty")
    p.add_argument(
        "--keep-empty",
        action="store_true",
        help="keep images, frames and slices without any annotated structure (left out by default)",
    )
    p.add_argument(
        "--option",
        action="append",
        metavar="NAME=VALUE",
        help="a dataset-specific converter option, e.g. test_fold=2 (BUS-BRA), frame_offset=0 (EchoNet-Pediatric); "
        "see the converter's docstring",
    )
    g = p.add_argument_group("generic converter")
    g.add_argument("--dataset", help="dataset name used in file names (default 'generic')")
    g.add_argument("--image-dir", default="images", help="image folder inside RAW_DIR")
    g.add_argument("--mask-dir", default="masks", help="mask folder inside RAW_DIR")
    g.add_argument("--mask-pattern", default="{stem}.png", help="mask name, {stem} = image name without suffix")
    g.add_argument("--category", action="append", metavar="VALUE=NAME", help="grey value or R,G,B -> category")
    g.add_argument("--threshold", type=int, default=1, help="without --category: foreground = mask >= this")
    g.add_argument("--recursive", action="store_true")
    g.add_argument("--patient-pattern", help="regex; group 1 of the image path is the patient id")
    g.add_argument("--class-from-folder", action="store_true", help="image-level label = parent folder name")
    p.set_defaults(func=_cmd_convert)

    p = commands.add_parser("build", help="convert every dataset under RAW_ROOT, write agnostic train/val/test")
    p.add_argument("raw_root", type=Path)
    p.add_argument("out_root", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--splits", type=Path, help="fixed splits JSON ({dataset: {split: [source paths]}})")
    p.add_argument("--min-pixels", type=int, default=MIN_PIXELS)
    p.add_argument("--min-fraction", type=float, default=MIN_FRACTION)
    _add_image_mode(p)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_build)

    p = commands.add_parser("shared", help="train/val/test files from the project's shared BUSI/HC18/MMOTU data")
    p.add_argument("data_root", type=Path)
    p.add_argument("out_root", type=Path)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_shared)

    p = commands.add_parser("validate", help="check a COCO file (exit 1 when problems are found)")
    p.add_argument("coco", type=Path)
    p.add_argument("--check-files", action="store_true", help="also check that image files exist")
    p.add_argument("--allow-any-ids", action="store_true", help="accept string and 128-bit ids")
    p.add_argument("--max-shown", type=int, default=50)
    p.set_defaults(func=_cmd_validate)

    p = commands.add_parser("stats", help="images and instances per dataset and organ, with a plot")
    p.add_argument("root", type=Path, help="a COCO file or a folder of them")
    p.add_argument("--plot", type=Path, help="PNG path (default ROOT/stats.png)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_stats)

    p = commands.add_parser("agnostic", help="write a class-agnostic copy of a COCO file")
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_agnostic)

    p = commands.add_parser("filter", help="write a copy without small objects (and optionally capped)")
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--min-pixels", type=int, default=MIN_PIXELS)
    p.add_argument("--min-fraction", type=float, default=MIN_FRACTION)
    p.add_argument("--max-instances", type=int, help="per-image instance cap")
    p.add_argument("--cap-policy", choices=("report", "keep_largest"), default="report")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_filter)
