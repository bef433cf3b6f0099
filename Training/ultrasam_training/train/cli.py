"""``ultrasam train``, ``ultrasam test`` and ``ultrasam export``.

Examples::

    ultrasam train ultrasam_lite                      # packaged config, work dir work_dirs/ultrasam_lite
    ultrasam train ultrasam_lite --resume             # continue after a kill, exactly
    ultrasam train my.py --cfg-options train_cfg.max_iters=100 randomness.seed=3
    torchrun --nproc_per_node 4 -m ultrasam.cli train ultrasam_vitb_paper --launcher pytorch
    ultrasam test ultrasam_lite --checkpoint work_dirs/ultrasam_lite/model_final.safetensors
    ultrasam export work_dirs/ultrasam_lite/iter_1000.pth model.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ultrasam_training.train.errors import TrainingError


def _train(args: argparse.Namespace) -> int:
    from ultrasam_training.train.runner import parse_cfg_options, train

    work_dir = train(
        args.config,
        work_dir=args.work_dir,
        cfg_options=parse_cfg_options(args.cfg_options),
        resume=args.resume,
        launcher=args.launcher,
    )
    print(f"work dir: {work_dir}\nweights: {work_dir / 'model_final.safetensors'}")
    return 0


def _test(args: argparse.Namespace) -> int:
    from ultrasam_training.evaluation.reports import write_report
    from ultrasam_training.train.run_eval import run_evaluation

    if args.out and not args.overwrite and Path(args.out, "summary.md").exists():
        raise TrainingError(f"{args.out} already holds results; pass --overwrite to replace them")
    results = run_evaluation(
        args.config,
        args.checkpoint,
        cfg_options=args.cfg_options,
        sets=args.sets,
        prompts=args.prompts,
        refine=args.refine,
        max_images=args.max_images,
        family=args.family,
        clicks=args.clicks,
        noc=args.noc,
    )
    for result in results:
        print(result.line())
    if args.out:
        written = write_report(results, args.out, overwrite=args.overwrite)
        print(f"wrote {len(written)} files under {args.out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from ultrasam_training.train.export import export_checkpoint, export_delta, pin_packaged_weights

    if args.pin and not args.delta_base:
        raise TrainingError("--pin registers a shipped delta: give --delta-base too")
    if args.delta_base:
        if not args.family:
            raise TrainingError("--delta-base needs --family (the family the composed model is, e.g. ultrasam_lite)")
        metrics = None
        if args.metrics:
            import json

            metrics = json.loads(Path(args.metrics).read_text())
        out = export_delta(
            args.checkpoint,
            args.out,
            base=args.delta_base,
            family=args.family,
            config=args.config,
            metrics=metrics,
            overwrite=args.overwrite,
        )
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, tensors that differ from {args.delta_base})")
        if args.pin:
            entry = pin_packaged_weights(
                out,
                name=args.pin,
                family=args.family,
                base=args.delta_base,
                description=args.description or f"{args.family}: {args.delta_base} + the packaged delta {out.name}",
            )
            print(f"pinned {entry['name']} in the weights registry: {entry['size']} bytes, sha256 {entry['sha256']}")
        return 0
    out = export_checkpoint(args.checkpoint, args.out, family=args.family, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train``, ``test`` and ``export`` sub-commands."""
    train = subparsers.add_parser("train", help="train or fine-tune a model with an mmengine config")
    train.add_argument("config", help="config file, or a packaged config name such as ultrasam_lite")
    train.add_argument("--work-dir", help="output folder (default work_dirs/<config name>)")
    train.add_argument("--resume", action="store_true", help="resume from the latest checkpoint in the work dir")
    train.add_argument("--cfg-options", nargs="+", metavar="KEY=VALUE", help="override config entries")
    train.add_argument(
        "--launcher",
        choices=("none", "pytorch", "slurm", "mpi"),
        default="none",
        help="distributed launcher (pytorch under torchrun)",
    )
    train.set_defaults(func=_train)

    test = subparsers.add_parser("test", help="Dice and COCO mAP of a checkpoint on the config's evaluation sets")
    test.add_argument("config", help="config file or packaged config name")
    test.add_argument(
        "--checkpoint",
        required=True,
        nargs="+",
        help="model_final.safetensors, an mmengine checkpoint, or a weights name (e.g. litemedsam); "
        "several are compared on the same images",
    )
    test.add_argument("--sets", nargs="+", help="evaluation set names of the config to run (default: all)")
    test.add_argument("--prompts", nargs="+", choices=("point", "inside", "box"), help="prompt kinds")
    test.add_argument("--refine", nargs="+", choices=("on", "off"), help="refinement settings to evaluate")
    test.add_argument("--max-images", type=int, help="evaluate only the first N images of each set")
    test.add_argument("--family", help="preprocessing family of the checkpoints (default: the config's)")
    test.add_argument("--cfg-options", nargs="+", metavar="KEY=VALUE", help="override config entries")
    test.add_argument(
        "--clicks", type=int, default=0, metavar="N", help="also simulate N clicks per instance: IoU@1..N and NoC@85/90"
    )
    test.add_argument("--noc", action="store_true", help="also NoC@85/90 (clicks go on up to 20)")
    test.add_argument(
        "--out",
        metavar="RESULTS_DIR",
        help="write the tables and plots of ultrasam evaluate (summary.md/csv/json, per-instance CSV)",
    )
    test.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    test.set_defaults(func=_test)

    export = subparsers.add_parser("export", help="mmengine checkpoint -> plain segment_anything state dict")
    export.add_argument("checkpoint", help="checkpoint written by ultrasam train")
    export.add_argument("out", help="output .safetensors (tensors + the model family in its header; no pickle)")
    export.add_argument("--family", help="family recorded beside the weights (default: from the checkpoint)")
    export.add_argument(
        "--delta-base",
        metavar="WEIGHTS",
        help="write only the tensors that differ from these registered weights (a shippable delta)",
    )
    export.add_argument("--config", help="training config whose sha256 the delta records")
    export.add_argument("--metrics", help="JSON file of measured metrics the delta records")
    export.add_argument(
        "--pin",
        metavar="NAME",
        help="register OUT (a file inside the ultrasam package) under NAME in weights.json, size and sha256 measured",
    )
    export.add_argument("--description", help="the registry entry's description (with --pin)")
    export.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    export.set_defaults(func=_export)


__all__ = ["register", "TrainingError"]
