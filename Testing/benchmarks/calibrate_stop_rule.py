"""Choose propagation's stop rule for one model: record unstopped sweeps, then replay a grid of rules.

Every case of every kind in :data:`ultrasam.phantom.VALIDATION_SEEDS` (never the test or benchmark
seeds) is prompted with its box (3 px loose) on its middle object frame and propagated — with the
model family's :class:`~ultrasam.propagate.Carry` — under a rule that never stops, recording the
model's :class:`~ultrasam.propagate.Evidence` on every frame of both sweeps and the mask it kept.
With one keyframe a sweep's path does not depend on its stop rule up to where that rule stops it (a
doubted frame still prompts the next), so each rule of the grid is scored exactly by cutting the recorded sweeps where it would have stopped them:

* mean 3D Dice over the cases (the user's number);
* early stops (a sweep ending more than one frame inside the object) and late stops (more than one
  frame past it), over all sweeps that had an object frame to go to.

Usage: ``python Testing/benchmarks/calibrate_stop_rule.py --model ultrasam_lite [--seeds 100 101]
[--record work_dirs/stopcal_ultrasam_lite.pkl] [--pool OTHER.pkl ...] [--focus] [--top 15]``. A recording is reused when
its file exists (delete it to record again). Prints the best rules as a Markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import os
import pickle
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from tqdm import tqdm

from ultrasam import pipeline
from ultrasam import propagate as propagation
from ultrasam.models import open_model
from ultrasam.phantom import CASE_KINDS, VALIDATION_SEEDS, dice, phantom_case
from ultrasam.predictor import Predictor
from ultrasam.propagate import Evidence, StopRule


class _NeverStop(StopRule):
    """Keeps every non-empty frame but still measures the appearance and contrast evidence."""

    @property
    def compares_appearance(self) -> bool:
        return True

    @property
    def compares_contrast(self) -> bool:
        return True


def record(model_name: str, seeds: list[int]) -> list[dict]:
    """Unstopped sweeps of every validation case: per frame, the evidence and the kept mask."""
    model = open_model(model_name, device="cpu")
    never = _NeverStop(**asdict(StopRule.legacy(min_score=-1.0)))
    cases = []
    original = propagation._Run._predict
    for seed, kind in tqdm(list(itertools.product(seeds, CASE_KINDS)), desc="cases", unit="case"):
        case = phantom_case(kind, seed)
        truth = case.truth()
        frames: dict[int, tuple[int, Evidence]] = {}

        def recording(run, current, index, _original=original, _frames=frames):
            result, evidence = _original(run, current, index)
            _frames[index] = (current.step, evidence)
            return result, evidence

        propagation._Run._predict = recording
        try:
            results = pipeline.segment(
                case.stack(), case.box_prompts(1), Predictor(model, cache_size=64), propagate=True,
                stop_rule=never, lookahead=0, progress=False,
            )
        finally:
            propagation._Run._predict = original
        masks = {n: r.mask.astype(bool) for n, r in results.items()}
        keyframe = next(n for n, r in results.items() if r.prompted)
        cases.append(dict(name=case.name, truth=truth, keyframe=keyframe, masks=masks, frames=frames))
    return cases


def stops(case: dict, rule: StopRule) -> dict[int, int]:
    """Per direction, the last frame ``rule`` keeps (the keyframe when none)."""
    last = {}
    for step in (-1, 1):
        kept, doubted = case["keyframe"], 0
        index = case["keyframe"] + step
        while index in case["frames"]:
            evidence = case["frames"][index][1]
            if rule.reason(evidence) is None:
                kept, doubted = index, 0
            else:
                doubted += 1
                if doubted >= rule.patience or evidence.area < rule.min_area:
                    break
            index += step
        last[step] = kept
    return last


def score(cases: list[dict], rule: StopRule) -> dict[str, float]:
    dices, early, late, sweeps = [], 0, 0, 0
    for case in cases:
        truth, key = case["truth"], case["keyframe"]
        last = stops(case, rule)
        dices.append(_dice_between(case, last[-1], last[1]))
        present = truth.any(axis=(1, 2))
        for step in (-1, 1):
            # the object's end in this direction: the last frame of its contiguous run from the keyframe
            end = key
            while 0 <= end + step < len(present) and present[end + step]:
                end += step
            if end == key and not (0 <= key + step < len(present)):
                continue
            sweeps += 1
            overshoot = (last[step] - end) * step
            early += overshoot < -1
            late += overshoot > 1
    return dict(dice=float(np.mean(dices)), early=early, late=late, sweeps=sweeps)


# Values each test may take in the grid. FOCUS_GRID varies only the appearance, contrast and patience
# tests (the geometric safety nets stay the base rule's).
FULL_GRID = dict(
    min_similarity=(-1.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.88, 0.9),
    min_margin=(-2.0, -0.1, -0.05, -0.03, -0.01, 0.0, 0.02),
    min_score=(0.0, 0.3, 0.5, 0.6, 0.7),
    min_stability=(0.0, 0.35, 0.5, 0.6),
    max_growth=(1.5, 2.5),
    min_shrink=(0.3, 0.5),
    max_fill=(0.9, 1.0, float("inf")),
    min_box_iou=(0.0, 0.3, 0.6),
    min_contrast=(float("-inf"), 0.3, 0.5, 0.7),
    patience=(1, 2, 3),
)
FOCUS_GRID = dict(
    min_similarity=(-1.0, 0.8, 0.85, 0.88, 0.9, 0.92, 0.94),
    min_margin=(-2.0, -0.05, -0.01, 0.0),
    min_contrast=(float("-inf"), 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
    contrast_floor=(0.2, 0.3, 0.4, 0.5, 0.7),
    patience=(1, 2, 3),
)


def grid(base: StopRule, focus: bool = False) -> list[StopRule]:
    """Every combination of FULL_GRID's values (483,840 rules), or of FOCUS_GRID's (2,940)."""
    values = FOCUS_GRID if focus else FULL_GRID
    return [replace(base, **dict(zip(values, combo))) for combo in itertools.product(*values.values())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ultrasam_lite")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(VALIDATION_SEEDS[:2]))
    parser.add_argument("--record", type=Path, default=None)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--focus", action="store_true", help="vary only the appearance, contrast and patience tests")
    parser.add_argument(
        "--pool", type=Path, nargs="+", default=[], help="further recordings (other validation seeds) scored together"
    )
    args = parser.parse_args()
    if not set(args.seeds) <= set(VALIDATION_SEEDS):
        parser.error(f"choose rules on the validation seeds only: {VALIDATION_SEEDS}")
    torch.set_num_threads(args.threads)
    path = args.record or Path(f"work_dirs/stopcal_{args.model}.pkl")
    if path.exists():
        cases = pickle.loads(path.read_bytes())  # our own recording, written below
        if any("keyframe_contrast" not in vars(evidence) for case in cases for _, evidence in case["frames"].values()):
            parser.error(f"{path} was recorded before the contrast evidence existed: delete it to record again")
    else:
        cases = record(args.model, args.seeds)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(cases))
    for extra in args.pool:
        cases += pickle.loads(extra.read_bytes())  # recordings this script wrote
    print(f"{len(cases)} cases from {', '.join(map(str, [path, *args.pool]))}")
    never = score(cases, StopRule.legacy(min_score=-1.0))
    print(f"never stopping: mean 3D Dice {never['dice']:.3f}; oracle per case: "
          f"{np.mean([_oracle(c) for c in cases]):.3f}")
    default = StopRule.for_family(open_model(args.model, device="cpu").spec.family)
    rows = [(rule, score(cases, rule)) for rule in tqdm(grid(default, args.focus), desc="rules", unit="rule")]
    rows.sort(key=lambda row: (-round(row[1]["dice"], 3), row[1]["early"]))
    fields = ("min_similarity", "min_margin", "min_contrast", "contrast_floor", "min_score", "min_stability", "max_growth",
              "min_shrink", "max_fill", "min_box_iou", "patience")
    print("| " + " | ".join(fields) + " | 3D Dice | early | late |")
    print("|" + "---|" * (len(fields) + 3))
    current = score(cases, default)
    for rule, result in [(default, current), *rows[: args.top]]:
        values = " | ".join(f"{getattr(rule, f):g}" for f in fields)
        print(f"| {values} | {result['dice']:.3f} | {result['early']}/{result['sweeps']} | {result['late']}/{result['sweeps']} |")


def _dice_between(case: dict, low: int, high: int) -> float:
    """3D Dice of the recorded masks on frames ``low..high`` (memoised: the grid asks again and again)."""
    memo = case.setdefault("memo", {})
    if (low, high) not in memo:
        predicted = np.zeros_like(case["truth"], bool)
        for n in range(low, high + 1):
            if n in case["masks"]:
                predicted[n] = case["masks"][n]
        memo[low, high] = dice(predicted, case["truth"])
    return memo[low, high]


def _oracle(case: dict) -> float:
    """The best 3D Dice any pair of stop frames could reach on this recording (an upper bound)."""
    key, frames = case["keyframe"], sorted(case["masks"])
    return max(
        _dice_between(case, low, high) for low in frames if low <= key for high in frames if high >= key
    )


if __name__ == "__main__":
    main()
