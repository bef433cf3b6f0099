"""``ultrasam segment``: one image, a DICOM file or a cine loop, prompted by pixel clicks and boxes.

A multi-frame input (cine DICOM, 2D+t volume) is segmented on ``--frame`` (default 0; repeat it to
prompt several keyframes); with ``--propagate`` the masks are carried to the other frames until the
object ends (see ``--stop-rule``), each frame taking the mask of its nearest keyframe. Outputs never overwrite an existing
file unless ``--overwrite`` is given, and are written atomically.

``--classifier FILE`` (a ``prompt_classifier.safetensors`` from ``ultrasam downstream prompted``,
trained on the model in use) also prints each prompted frame's class, e.g. ``label: malignant 0.82
(research benchmark, not a diagnosis)``. It is a research benchmark, never a diagnosis.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ultrasam.commands.common import (
    add_model_options,
    add_output_options,
    add_propagation_options,
    check_outputs,
    make_predictor,
    refuse_unsupported_prompts,
    report_sweeps,
    propagation_from_args,
)
from ultrasam.errors import PromptError, UltraSamError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment a 2D image, DICOM or cine loop from clicks and boxes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", type=Path, help="PNG/JPEG/BMP/TIFF image, DICOM (single- or multi-frame), or a 2D+t volume")
    add_pixel_prompt_options(parser)
    parser.add_argument("--frame", type=int, action="append", default=[],
                        help="frame the prompts apply to (multi-frame inputs; default 0); repeat for keyframes")
    add_propagation_options(parser)
    add_output_options(parser, "mask: .png (one frame, 0/255), or .seg.nrrd / .nrrd / .nii.gz for a cine loop")
    add_model_options(parser)
    add_classifier_option(parser, "frame")
    parser.set_defaults(func=run)


def add_classifier_option(parser: argparse.ArgumentParser, frame: str) -> None:
    parser.add_argument(
        "--classifier", type=Path, default=None, metavar="FILE",
        help=f"prompt classifier (.safetensors) trained on this model: also print each prompted {frame}'s class "
             "(research benchmark, not a diagnosis)",
    )


def load_classifier_arg(args: argparse.Namespace):
    """The ``--classifier`` file opened (before the model loads, so a bad file fails fast), or None."""
    if args.classifier is None:
        return None
    from ultrasam.classifier import load_prompt_classifier

    return load_prompt_classifier(args.classifier)


def add_pixel_prompt_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pixel prompts (x = column, y = row)")
    group.add_argument("--box", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"), help="box, exclusive max corner (COCO x, y, x+w, y+h)")
    group.add_argument("--point", nargs=2, type=float, action="append", default=[], metavar=("X", "Y"), help="positive click; repeatable")
    group.add_argument("--negative", nargs=2, type=float, action="append", default=[], metavar=("X", "Y"), help="negative click; repeatable")


def pixel_prompt_from_args(args: argparse.Namespace, frame_shape: tuple[int, int], index: int):
    """The CLI's pixel prompts as validated :class:`FramePrompts` (None when none were given)."""
    from ultrasam.prompts import pixel_prompts

    if not args.point and not args.negative and args.box is None:
        return None
    if args.negative and not args.point and args.box is None:
        raise PromptError("negative clicks alone do not name an object: add --point or --box")
    points = np.array([*args.point, *args.negative], float).reshape(-1, 2)
    labels = np.array([1] * len(args.point) + [0] * len(args.negative), np.int64)
    return pixel_prompts(frame_shape, points, labels, None if args.box is None else np.array(args.box, float), index)


def run(args: argparse.Namespace) -> int:
    from ultrasam import outputs, pipeline

    check_outputs(args, [args.image, args.classifier], one_frame=True)
    classifier = load_classifier_arg(args)
    stack = pipeline.load(args.image, axis="axial")
    frames = sorted(set(args.frame or [0]))
    for index in frames:
        if not 0 <= index < len(stack):
            raise PromptError(f"--frame {index} is outside the file's frames 0..{len(stack) - 1}")
    if args.propagate and len(stack) == 1:
        raise UltraSamError(f"{args.image} has a single frame: nothing to propagate to")
    outputs.check_mask_suffix(args.out, one_frame=not args.propagate and len(frames) == 1)  # before the model
    prompts = {index: pixel_prompt_from_args(args, stack.frame_shape, index) for index in frames}
    if prompts[frames[0]] is None:
        raise PromptError("give a prompt: --box X0 Y0 X1 Y1, --point X Y or --negative X Y")
    predictor = make_predictor(args)
    refuse_unsupported_prompts(predictor.model.spec, prompts)
    if classifier is not None:
        predictor.attach_classifier(classifier)  # refuses a classifier trained on another model
    results = pipeline.segment(
        stack, prompts, predictor, propagate=args.propagate, frame_range=args.range,
        **propagation_from_args(args), progress=args.propagate,
    )
    out = args.out
    pipeline.save(out, stack, results, overlay=args.overlay, rle=args.rle, prompts=prompts, overwrite=args.overwrite)
    for index, result in results.items():
        log.info("frame %d: %d pixels, predicted IoU %.3f", index, result.mask.sum(), result.score)
    report_sweeps(results)
    if classifier is not None:
        report_labels(results, several=len(frames) > 1)
    print(f"wrote {out} ({len(results)} frame{'s' if len(results) > 1 else ''})")
    return 0


def report_labels(results, several: bool, frame: str = "frame") -> None:
    """One line per prompted frame: ``label: malignant 0.82 (research benchmark, not a diagnosis)``."""
    from ultrasam.classifier import SHORT_NOTICE, format_label

    for index, result in sorted(results.items()):
        if result.label is not None:
            where = f"{frame} {index} " if several else ""
            print(f"{where}label: {format_label(result.label, result.probabilities)} ({SHORT_NOTICE})")
