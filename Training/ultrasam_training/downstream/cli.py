"""``ultrasam downstream classify|segment|prompted CONFIG``, ``compare BASE NEW`` and ``lesion-vs-image PROMPTED IMAGE``.

Examples::

    ultrasam downstream classify downstream_classify_linear_litemedsam       # linear probe, cached features
    ultrasam downstream classify downstream_classify_lora_litemedsam --cfg-options model.encoder=lite.safetensors
    ultrasam downstream segment downstream_segment_litemedsam --work-dir work_dirs/m2f_lite
    ultrasam downstream prompted downstream_prompted_litemedsam              # writes prompt_classifier.safetensors
    ultrasam downstream compare work_dirs/run_a work_dirs/run_b --metric correct
    ultrasam downstream lesion-vs-image work_dirs/downstream_prompted_ultrasam_lite work_dirs/downstream_classify_lora_lpft_litemedsam

Research benchmarks on a public dataset split, not a diagnosis.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from ultrasam_training.downstream.paired import ITEM_METRICS


def _run(args: argparse.Namespace) -> int:
    from ultrasam_training.downstream.run import run_downstream
    from ultrasam_training.train.runner import parse_cfg_options

    run_downstream(
        args.task,
        args.config,
        work_dir=args.work_dir,
        cfg_options=parse_cfg_options(args.cfg_options),
        resume=args.resume,
        evaluate_only=args.evaluate,
    )
    return 0


def _compare(args: argparse.Namespace) -> int:
    from ultrasam.atomic import write_text_atomic
    from ultrasam_training.downstream.paired import compare_runs, markdown_table

    result = compare_runs(
        args.base, args.new, set_name=args.set, metric=args.metric, bootstrap=args.bootstrap, seed=args.seed
    )
    table = markdown_table([result])
    print(table, end="")
    if args.out:
        write_text_atomic(args.out, table, overwrite=args.overwrite)
        row = {**asdict(result), "verdict": result.verdict}
        write_text_atomic(str(args.out) + ".json", json.dumps(row, indent=1) + "\n", overwrite=args.overwrite)
    return 0


def _lesion_vs_image(args: argparse.Namespace) -> int:
    from ultrasam.atomic import write_text_atomic
    from ultrasam_training.downstream.paired import lesion_auroc_against_image

    result = lesion_auroc_against_image(
        args.prompted, args.image, args.set, args.image_set, bootstrap=args.bootstrap, seed=args.seed
    )
    table = result.markdown(Path(args.prompted).resolve().name, Path(args.image).resolve().name)
    print(table, end="")
    if args.out:
        write_text_atomic(args.out, table, overwrite=args.overwrite)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ultrasam downstream`` with its task sub-commands."""
    parser = subparsers.add_parser(
        "downstream",
        help="downstream benchmarks of an encoder (research, not diagnosis)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    helps = {
        "classify": "image classification on pooled encoder features (paper §8.1)",
        "segment": "Mask2Former instance segmentation on the encoder's feature levels (§8.2)",
        "prompted": "a lesion's class from one box or click, from the decoder's output (§8.3)",
    }
    for task, text in helps.items():
        sub = tasks.add_parser(task, help=text)
        sub.add_argument("config", help="config file or packaged name, e.g. downstream_classify_linear_litemedsam")
        sub.add_argument("--cfg-options", nargs="+", metavar="KEY=VALUE", help="override config entries")
        sub.add_argument("--work-dir", help="output folder (default work_dirs/<config name>)")
        sub.add_argument("--resume", action="store_true", help="resume from the latest checkpoint in the work dir")
        sub.add_argument("--evaluate", metavar="CHECKPOINT", help="skip training: evaluate this checkpoint")
        sub.set_defaults(func=_run)
    compare = tasks.add_parser("compare", help="paired comparison of two downstream runs on the same test items")
    compare.add_argument("base", help="work dir (or results folder) of the reference run")
    compare.add_argument("new", help="work dir (or results folder) of the run under test")
    compare.add_argument(
        "--set", default="test", help="evaluation set name (default test; prompted: test_box, test_point)"
    )
    compare.add_argument("--metric", choices=ITEM_METRICS, default="correct", help="per-item value (default correct)")
    compare.add_argument("--bootstrap", type=int, default=10_000)
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--out", help="also write the table (and OUT.json)")
    compare.add_argument("--overwrite", action="store_true")
    compare.set_defaults(func=_compare)
    versus = tasks.add_parser(
        "lesion-vs-image",
        help="benign/malignant AUROC of a prompted run against an image-level classifier on the same lesions",
    )
    versus.add_argument("prompted", help="work dir of a `downstream prompted` run")
    versus.add_argument("image", help="work dir of a `downstream classify` run (3-class or benign/malignant)")
    versus.add_argument("--set", default="test_box", help="the prompted run's set (test_box or test_point)")
    versus.add_argument("--image-set", default="test", help="the image-level run's set (default test)")
    versus.add_argument("--bootstrap", type=int, default=10_000)
    versus.add_argument("--seed", type=int, default=0)
    versus.add_argument("--out", help="also write the table")
    versus.add_argument("--overwrite", action="store_true")
    versus.set_defaults(func=_lesion_vs_image)
