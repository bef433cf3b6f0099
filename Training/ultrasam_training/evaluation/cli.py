"""``ultrasam evaluate``: score models on COCO files with GT-derived prompts and simulated clicks.

Examples::

    ultrasam evaluate --model litemedsam --model ellipse --model filled-box \\
        --shared-data ../shared/data --prompt box point --clicks 10 --out results/litemedsam
    ultrasam evaluate --checkpoint work_dirs/ultrasam_lite/model_final.safetensors --coco val.json \\
        --prompt point --refine --out results/lite_val

A COCO file that would be scored wrongly (duplicate annotation ids, a NaN/inf/empty bbox, ids that
are not integers or strings, images over the pixel cap) is refused before any model runs;
``ultrasam data validate FILE.json`` lists all its problems at once.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ultrasam_training.evaluation.clicks import CLICK_RULES, NOC_CAP
from ultrasam_training.evaluation.dataset import EvalDataset
from ultrasam_training.evaluation.errors import EvaluationError
from ultrasam_training.evaluation.prompts import PROMPT_KINDS
from ultrasam_training.evaluation.reports import journal_path, planned_paths, refuse_existing_outputs, write_report
from ultrasam_training.evaluation.runner import evaluate_dataset
from ultrasam_training.evaluation.segmenters import BASELINES, load_segmenter

log = logging.getLogger(__name__)

SHARED_TEST_SETS = ("test_busi", "test_hc18", "test_mmotu")


def _datasets(args: argparse.Namespace) -> list[EvalDataset]:
    datasets = []
    image_root = Path(args.image_root) if args.image_root else None
    for coco in args.coco or []:
        datasets.append(EvalDataset.load(coco, image_root=image_root, limit=args.limit))
    if args.shared_data:
        from ultrasam_training.data.build import build_shared_splits

        paths = build_shared_splits(args.shared_data, args.splits_dir, if_exists="reuse", progress=not args.quiet)
        for name in SHARED_TEST_SETS:
            datasets.append(EvalDataset.load(paths[name], name=name, limit=args.limit))
    names = [d.name for d in datasets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise EvaluationError(f"two COCO files share the dataset name {duplicates[0]!r}; rename one")
    return datasets


def _model_sources(args: argparse.Namespace) -> list[str]:
    sources = list(args.checkpoint or []) + list(args.model or [])
    if not sources:
        raise EvaluationError("give at least one --model NAME or --checkpoint PATH")
    return list(dict.fromkeys(sources))


def _prompts_for(segmenter, prompts: list[str]) -> list[str]:
    usable = [p for p in prompts if ("box" if p == "box" else "point") in segmenter.prompt_kinds]
    for prompt in prompts:
        if prompt not in usable:
            log.info("%s takes no %s prompts: skipped", segmenter.name, prompt)
    return usable


def run(args: argparse.Namespace) -> int:
    if args.clicks < 0:
        raise EvaluationError("--clicks must be 0 or more")
    if args.noc_cap < 1:
        raise EvaluationError("--noc-cap must be at least 1")
    if not args.coco and not args.shared_data:
        raise EvaluationError("give --coco FILE.json or --shared-data DIR")
    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise EvaluationError("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise EvaluationError(f"--device {args.device} requested but torch sees no CUDA GPU; use --device cpu")
    datasets = _datasets(args)
    segmenters = [
        load_segmenter(source, family=args.family, refine=args.refine, device=args.device)
        for source in _model_sources(args)
    ]
    plan = []
    for segmenter in segmenters:
        prompts = _prompts_for(segmenter, args.prompt)
        if not prompts:
            raise EvaluationError(f"{segmenter.name} can take none of the prompts {args.prompt}")
        plan.append((segmenter, prompts))
    runs = [(d.name, s.name, p, s.refine) for d in datasets for s, prompts in plan for p in prompts]
    if not args.overwrite:
        refuse_existing_outputs(planned_paths(args.out, runs, clicks=args.clicks > 0))
    journals = {(d.name, s.name): journal_path(args.out, d.name, s.name, s.refine) for d in datasets for s, _ in plan}
    left = [p for p in journals.values() if p.exists()]
    if left and not args.resume:
        if not args.overwrite:
            raise EvaluationError(
                f"{left[0]} holds the records of an interrupted run: pass --resume to continue it, "
                "or --overwrite to start again"
            )
        for path in left:
            path.unlink()
    results = []
    for dataset in datasets:
        for segmenter, prompts in plan:
            interactive = "point" in segmenter.prompt_kinds
            if (args.clicks or args.noc) and not interactive:
                log.info("%s takes no clicks: click simulation skipped", segmenter.name)
            results += evaluate_dataset(
                segmenter,
                dataset,
                prompts,
                clicks=args.clicks if interactive else 0,
                noc=args.noc and interactive,
                noc_cap=args.noc_cap,
                feed_logits=args.feed_logits,
                click_rule=args.click_rule,
                progress=not args.quiet,
                journal=journals[(dataset.name, segmenter.name)],
            )
    written = write_report(results, args.out, overwrite=args.overwrite)
    print((Path(args.out) / "summary.md").read_text(encoding="utf-8"))
    print(f"wrote {len(written)} files under {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score models on COCO files (mAP, Dice, IoU, clicks to reach IoU)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    models = parser.add_argument_group("models (repeat to compare several)")
    models.add_argument(
        "--model",
        action="append",
        metavar="NAME",
        help=f"registered weights name (litemedsam, ultrasam, sam_vit_b, medsam, ...) or a baseline: {', '.join(BASELINES)}",
    )
    models.add_argument("--checkpoint", action="append", metavar="PATH", help="a checkpoint file (family detected)")
    models.add_argument("--family", default=None, help="force the recipe of SAM-layout checkpoints (e.g. medsam)")
    models.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    models.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default torch's; 1 is much faster on a machine shared with other jobs)",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--coco", action="append", metavar="FILE.json", help="a COCO file to evaluate (repeatable)")
    data.add_argument("--image-root", default=None, metavar="DIR", help="folder holding the --coco files' images")
    data.add_argument(
        "--shared-data",
        default=None,
        metavar="DIR",
        help="the shared data folder: build (or reuse) its splits and evaluate " + ", ".join(SHARED_TEST_SETS),
    )
    data.add_argument(
        "--splits-dir",
        default="work_dirs/data",
        metavar="DIR",
        help="where --shared-data splits are built (default work_dirs/data, as the training configs)",
    )
    data.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N annotated images per file")
    protocol = parser.add_argument_group("protocol")
    protocol.add_argument(
        "--prompt",
        nargs="+",
        choices=PROMPT_KINDS,
        default=["box"],
        help="box = exact GT box; point = GT centroid (paper); inside = distance-transform maximum",
    )
    protocol.add_argument(
        "--refine",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="UltraSam's second decoder pass (default: the model family's own default)",
    )
    protocol.add_argument("--clicks", type=int, default=0, metavar="N", help="simulate exactly N clicks: IoU@1..N")
    protocol.add_argument(
        "--noc",
        action="store_true",
        help="also count the clicks needed to reach IoU 0.85 / 0.90 (NoC@85/90; clicks go on up to --noc-cap)",
    )
    protocol.add_argument(
        "--noc-cap", type=int, default=NOC_CAP, help=f"NoC's click limit, counted when never reached (default {NOC_CAP})"
    )
    protocol.add_argument(
        "--click-rule",
        choices=CLICK_RULES,
        default="distance",
        help="which error region gets the next click: the deeper one (distance, RITM) or the larger (area)",
    )
    protocol.add_argument(
        "--feed-logits",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="feed the previous low-res logits as mask_input on each click (default on)",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--out", required=True, metavar="RESULTS_DIR", help="results folder")
    output.add_argument("--overwrite", action="store_true", help="replace existing result files")
    output.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its per-instance records (RESULTS_DIR/records/*.jsonl)",
    )
    output.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
