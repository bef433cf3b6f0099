"""``ultrasam segment-volume``: a 3D volume (or 2D+t cine stored as a volume) prompted by Slicer
markups files and/or pixel prompts on chosen slices, written as a Slicer segmentation.

Frames are slices along ``--axis``; sagittal (the default) means the slices of constant first
voxel index i, as in the US-43d tooling: rows run along k, columns along j. Markups
(``.mrk.json`` point lists and ROIs) are read in the coordinate system the file declares and
mapped through the volume's geometry; a point applies to the slice it lies on (within half a
voxel), an ROI to every slice it crosses. Negative clicks: a separate file given with
``--negative-markups``, or points whose label starts with "-" or whose description contains
"negative".

``--classifier FILE`` (a ``prompt_classifier.safetensors`` trained on the model in use) also prints
each prompted slice's class, e.g. ``slice 20 label: malignant 0.82 (research benchmark, not a
diagnosis)``; propagated slices are not classified (a carried box is not a prompt it learnt).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

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
from ultrasam.commands.segment import (
    add_classifier_option,
    add_pixel_prompt_options,
    load_classifier_arg,
    pixel_prompt_from_args,
    report_labels,
)
from ultrasam.errors import PromptError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment-volume",
        help="segment a 3D volume from Slicer markups or pixel prompts, write a .seg.nrrd",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("volume", type=Path, help="NRRD, NIfTI, MHA/MHD or a DICOM series folder")
    group = parser.add_argument_group("markups prompts")
    group.add_argument("--markups", type=Path, action="append", default=[], help="point list and/or ROI .mrk.json (positive); repeatable")
    group.add_argument("--negative-markups", type=Path, action="append", default=[], help="point list of negative clicks; repeatable")
    group.add_argument("--roi", type=Path, action="append", default=[], help="ROI .mrk.json; repeatable")
    parser.add_argument("--axis", choices=("sagittal", "axial", "coronal"), default="sagittal", help="slicing axis (default sagittal = constant i)")
    parser.add_argument("--slice", type=int, action="append", default=[], help="slice the pixel prompts apply to; repeatable")
    add_pixel_prompt_options(parser)
    add_propagation_options(parser)
    add_output_options(parser, "segmentation .seg.nrrd (or a labelmap .nrrd / .nii.gz)")
    parser.add_argument("--segment-name", default="UltraSam 1", help="segment name in the .seg.nrrd")
    add_model_options(parser)
    add_classifier_option(parser, "slice")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ultrasam import outputs, pipeline

    inputs = [args.volume, *args.markups, *args.negative_markups, *args.roi, args.classifier]
    check_outputs(args, inputs, one_frame=True)
    classifier = load_classifier_arg(args)
    stack = pipeline.load(args.volume, axis=args.axis)
    pixel = {}
    if args.slice:
        for index in args.slice:
            if not 0 <= index < len(stack):
                raise PromptError(f"--slice {index} is outside the {stack.axis} slices 0..{len(stack) - 1}")
            prompt = pixel_prompt_from_args(args, stack.frame_shape, index)
            if prompt is None:
                raise PromptError("--slice needs pixel prompts: --point, --negative or --box")
            pixel[index] = prompt
    elif args.point or args.negative or args.box is not None:
        raise PromptError(f"pixel prompts need --slice K (one of 0..{len(stack) - 1} along {stack.axis})")
    prompts = pipeline.prompts(stack, markups=[*args.markups, *args.roi], negative_markups=args.negative_markups, pixel=pixel)
    if not prompts:
        raise PromptError("no prompts: give --markups/--roi files or --slice K with pixel prompts")
    outputs.check_mask_suffix(args.out, one_frame=not args.propagate and len(prompts) == 1)  # before the model
    log.info("prompted %s slices: %s", stack.axis, sorted(prompts))
    predictor = make_predictor(args)
    refuse_unsupported_prompts(predictor.model.spec, prompts)
    if classifier is not None:
        predictor.attach_classifier(classifier)  # refuses a classifier trained on another model
    results = pipeline.segment(
        stack, prompts, predictor, propagate=args.propagate,
        frame_range=tuple(args.range) if args.range else None, **propagation_from_args(args),
        key=str(args.volume),
    )
    pipeline.save(args.out, stack, results, overlay=args.overlay, rle=args.rle, segment_name=args.segment_name,
                  prompts=prompts, overwrite=args.overwrite)
    report_sweeps(results)
    if classifier is not None:
        report_labels(results, several=True, frame="slice")
    propagated = [n for n, r in results.items() if not r.prompted]
    print(f"wrote {args.out}: {len(results)} {stack.axis} slices ({len(prompts)} prompted, {len(propagated)} propagated)")
    return 0
