"""Where one propagation sweep's time goes: encoder, decoder, everything else, per slice.

Runs ``ultrasam demo``'s phantom volume (40 sagittal 64×160 slices, oblique, anisotropic; prompted
with the demo's ROI) through ``pipeline.segment(propagate=True)`` with a fresh predictor, alternating
the library's decoder (:mod:`ultrasam.decoder_cache`) and ``segment_anything``'s ``MaskDecoder``
(``Predictor(fast_decoder=False)``) so that load drifts hit both. The image encoder and the decoder
are timed where they run (the encoder mostly on the look-ahead worker thread, beside the decoder),
so their sum can exceed the wall time.

Usage: ``python Testing/benchmarks/profile_sweep.py [--model NAME] [--repeats 3] [--threads 2]``.
Prints a Markdown table; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch, as the CLI does

import torch

from ultrasam import pipeline
from ultrasam.commands.demo_volume import lesion_markups, phantom_volume
from ultrasam.models import open_model
from ultrasam.predictor import Predictor

TIMED = {"encoder": "_encode", "decoder": "_decode_model_coords"}


class Clock:
    """Seconds spent in the timed Predictor methods, across threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._originals = {name: getattr(Predictor, method) for name, method in TIMED.items()}

    def __enter__(self) -> "Clock":
        for name, method in TIMED.items():
            setattr(Predictor, method, self._wrap(name, self._originals[name]))
        return self

    def __exit__(self, *exc) -> None:
        for name, method in TIMED.items():
            setattr(Predictor, method, self._originals[name])

    def _wrap(self, name, original):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[name] += time.perf_counter() - start
                    self.calls[name] += 1

        return timed


def sweep(model, stack, prompts, fast_decoder: bool) -> dict[str, float]:
    predictor = Predictor(model, cache_size=64, fast_decoder=fast_decoder)
    with Clock() as clock:
        start = time.perf_counter()
        results = pipeline.segment(stack, prompts, predictor, propagate=True, progress=False)
        wall = time.perf_counter() - start
    encoded = results.encoded
    return {
        "slices kept": len(results),
        "slices encoded": encoded,
        "encoder s / slice encoded": clock.seconds["encoder"] / max(encoded, 1),
        "decoder calls / slice kept": clock.calls["decoder"] / max(len(results), 1),
        "decoder s / slice kept": clock.seconds["decoder"] / max(len(results), 1),
        "wall s / slice encoded": wall / max(encoded, 1),
        "wall s / volume": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="registry name or checkpoint (default: the default model)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = open_model(args.model) if args.model else open_model()
    volume, truth = phantom_volume()
    with tempfile.TemporaryDirectory() as folder:
        import SimpleITK as sitk

        path = Path(folder) / "phantom.nrrd"
        sitk.WriteImage(volume.to_sitk(), str(path))
        middle = volume.shape_ijk[0] // 2
        roi, click = Path(folder) / "roi.mrk.json", Path(folder) / "click.mrk.json"
        lesion_markups(volume, truth, middle, roi, click, overwrite=True)
        stack = pipeline.load(path, axis="sagittal")
        prompts = pipeline.prompts(stack, markups=[roi])
        runs: dict[str, list[dict[str, float]]] = {"ultrasam decoder": [], "segment_anything decoder": []}
        sweep(model, stack, prompts, True)  # warm-up
        for repeat in range(args.repeats):
            order = list(runs) if repeat % 2 == 0 else list(runs)[::-1]
            for name in order:
                runs[name].append(sweep(model, stack, prompts, name == "ultrasam decoder"))
    keys = list(next(iter(runs.values()))[0])
    print(f"\n{model.spec.family}, {args.threads} threads, median of {args.repeats} sweeps of the demo phantom\n")
    print("| per sweep | " + " | ".join(runs) + " |\n|---|" + "---|" * len(runs))
    for key in keys:
        values = [statistics.median(r[key] for r in rows) for rows in runs.values()]
        cells = [f"{v:g}" if float(v).is_integer() else f"{v:.3f}" for v in values]
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
