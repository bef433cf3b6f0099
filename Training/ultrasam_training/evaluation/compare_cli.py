"""``ultrasam compare``: is one evaluated model really better than another, instance by instance?

Examples::

    ultrasam compare results/litemedsam results/lite --base-model litemedsam
    ultrasam compare results/lite800 results/lite1600 --metric noc85 --out compare.md
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from ultrasam.atomic import write_text_atomic
from ultrasam_training.evaluation.paired import METRICS, compare_results, markdown_table


def run(args: argparse.Namespace) -> int:
    results = compare_results(
        args.base,
        args.new,
        metric=args.metric,
        base_model=args.base_model,
        new_model=args.new_model,
        base_refine=args.base_refine,
        new_refine=args.new_refine,
        bootstrap=args.bootstrap,
        seed=args.seed,
    )
    table = markdown_table(results)
    print(table, end="")
    if args.out:
        out = Path(args.out)
        write_text_atomic(out, table, overwrite=args.overwrite)
        rows = [{**asdict(r), "verdict": r.verdict} for r in results]
        write_text_atomic(out.with_suffix(".json"), json.dumps(rows, indent=1) + "\n", overwrite=args.overwrite)
        print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="paired per-instance comparison of two `ultrasam evaluate` results folders",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("base", metavar="BASE_RESULTS", help="results folder of the reference model")
    parser.add_argument("new", metavar="NEW_RESULTS", help="results folder of the model under test")
    parser.add_argument("--metric", choices=METRICS, default="dice", help="per-instance score (default dice)")
    parser.add_argument("--base-model", default=None, help="model name in BASE_RESULTS when it holds several")
    parser.add_argument("--new-model", default=None, help="model name in NEW_RESULTS when it holds several")
    parser.add_argument(
        "--base-refine",
        default=None,
        choices=("single", "refine", "none"),
        help="refinement setting in BASE_RESULTS when it holds several",
    )
    parser.add_argument(
        "--new-refine",
        default=None,
        choices=("single", "refine", "none"),
        help="refinement setting in NEW_RESULTS when it holds several",
    )
    parser.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--out", default=None, metavar="FILE.md", help="also write the table (and FILE.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.set_defaults(func=run)
