"""Options and helpers shared by the segmentation commands."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from ultrasam.models.door import DEFAULT_WEIGHTS, DEVICES


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument("--model", default=None, help=f"registered weights name (default {DEFAULT_WEIGHTS}); see `ultrasam weights list`")
    choice.add_argument("--checkpoint", default=None, help="a checkpoint file; its family is the one it records, else detected from the tensors")
    group.add_argument("--family", default=None, help="force the recipe for a SAM-layout checkpoint (e.g. medsam)")
    group.add_argument("--device", default="auto", help=f"{DEVICES} (default auto: a GPU when there is one)")
    refine = group.add_mutually_exclusive_group()
    refine.add_argument("--refine", dest="refine", action="store_true", default=None, help="UltraSam two-pass refinement")
    refine.add_argument("--no-refine", dest="refine", action="store_false", help="single decoder pass")


def add_propagation_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "propagation",
        "Every prompted frame is a keyframe; each frame takes the mask carried from its nearest keyframe. "
        "A frame with only negative clicks gets no mask and stops propagation there.",
    )
    group.add_argument("--propagate", action="store_true", help="carry masks from the prompted frames to their neighbours, until the object ends")
    group.add_argument("--range", nargs=2, type=int, metavar=("FIRST", "LAST"), help="never propagate outside these frames (inclusive)")
    group.add_argument("--stop-rule", choices=("evidence", "score"), default="evidence",
                       help="evidence (default): stop where the masks say the object ended (two frames in a row whose "
                            "mask looks, to the image encoder, unlike the keyframe's object; or area jumps, a mask "
                            "against its prompt box, low stability or predicted IoU); score: only on an empty mask or "
                            "a low predicted IoU (the rule before keyframes)")
    group.add_argument("--min-score", type=float, default=None, help="also stop where the predicted IoU falls below this (default 0.5)")
    group.add_argument("--use-logits", action="store_true",
                       help="also pass the previous frame's logits as a mask prompt (UltraSam-Lite always does)")


def propagation_from_args(args: argparse.Namespace) -> dict:
    """``pipeline.segment`` keywords for ``--stop-rule``, ``--min-score`` and ``--use-logits``; the
    evidence rule and the carried prompts are the ones chosen for the model's family."""
    from ultrasam.propagate import StopRule

    rule = None if args.stop_rule == "evidence" else StopRule.legacy()
    return {"stop_rule": rule, "min_score": args.min_score, "use_logits": True if args.use_logits else None}


def report_sweeps(results) -> None:
    """One line per propagation sweep: where it ended and why."""
    for end in getattr(results, "sweeps", ()):
        print(f"propagation {end}")


def add_output_options(parser: argparse.ArgumentParser, out_help: str) -> None:
    group = parser.add_argument_group("outputs (never overwritten without --overwrite)")
    group.add_argument("--out", type=Path, required=True, help=out_help)
    group.add_argument("--overlay", type=Path, help="QC overlay PNG (a montage for several frames)")
    group.add_argument("--rle", type=Path, help="also write the masks as COCO RLE JSON")
    group.add_argument("--overwrite", action="store_true", help="replace existing output files")


def check_outputs(args: argparse.Namespace, inputs: Iterable[Path | None], one_frame: bool) -> None:
    """Check every output before anything is loaded: a bad path must fail in a second, not after
    minutes of inference, and never leave one output written without the others. ``one_frame``:
    whether a PNG mask can be allowed yet (commands recheck once they know the frame count)."""
    from ultrasam import outputs

    named = {"--out": args.out, "--overlay": args.overlay, "--rle": args.rle}
    outputs.check_writable(named, overwrite=args.overwrite, inputs=[*inputs, args.checkpoint])
    outputs.check_mask_suffix(args.out, one_frame=one_frame)


def load_model_from_args(args: argparse.Namespace):
    from ultrasam.models import open_model

    return open_model(args.checkpoint or args.model, family=args.family, device=args.device)


def refuse_unsupported_prompts(spec, prompts) -> None:
    """Refuse clicks for a model trained on boxes only (LiteMedSAM): they give empty masks, silently."""
    from ultrasam.errors import PromptError
    from ultrasam.weights import DEFAULT_WEIGHTS

    if spec.supports("point"):
        return
    clicked = [n for n, p in sorted(prompts.items()) if p is not None and len(p.points)]
    if clicked:
        raise PromptError(
            f"the {spec.family} model was trained on boxes only and returns empty masks for clicks "
            f"(frame {clicked[0]}): give --box / an ROI, or use a model that takes clicks, e.g. --model {DEFAULT_WEIGHTS}"
        )


def make_predictor(args: argparse.Namespace):
    """A predictor honouring ``--refine/--no-refine`` (None keeps the family's default)."""
    from ultrasam.predictor import Predictor

    model = load_model_from_args(args)
    if args.refine is not None:
        model.spec = model.spec.with_(refine=args.refine)
    return Predictor(model, cache_size=64)
