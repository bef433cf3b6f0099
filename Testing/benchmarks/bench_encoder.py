"""Image-encoder benchmark: ``segment_anything``'s ViT encoder against the same encoder after
``accelerate_image_encoder``, same run, same weights, same input.

Times are medians of ``--repeats`` runs after one warm-up, the two encoders alternating so
that load from other processes hits both alike. Peak memory is each encoder alone in a fresh
child process (building the model, loading weights and one forward pass), started before the
parent builds anything: Linux's ``ru_maxrss`` of an exec'd child starts from the parent's RSS
at fork time, so the child reads its own ``VmHWM`` (``ru_maxrss`` where that is unavailable).

Without ``--checkpoint`` the weights are random (seed 0) with the relative-position tables
and absolute position embedding drawn N(0, 0.02) instead of SAM's zero init, so the rel-pos
paths are exercised. With one, any checkpoint ``ultrasam.models.load_model`` reads (SAM,
MedSAM, UltraSam).

Usage: ``python Testing/benchmarks/bench_encoder.py [--model vit_b] [--checkpoint PATH]
[--repeats 3] [--threads 2]``. Prints a Markdown table. Timings are only meaningful on an
otherwise idle machine: when other processes share the cores, OpenMP threads spin-waiting for
a descheduled partner inflate every parallel op (the accelerated encoder has many more, smaller
ones); ``OMP_WAIT_POLICY=PASSIVE`` in the environment avoids most of that.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

GIB = 1024**3


def build_encoder(model: str, checkpoint: str | None) -> nn.Module:
    """The reference ``ImageEncoderViT`` in eval mode (never accelerated)."""
    if checkpoint:
        from ultrasam.models import load_model

        return load_model(checkpoint, fast=False).sam.image_encoder.eval()
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    encoder = sam_model_registry[model]().image_encoder.eval()
    with torch.no_grad():
        for name, parameter in encoder.named_parameters():
            if "rel_pos" in name or name == "pos_embed":
                parameter.normal_(0.0, 0.02)
    return encoder


def sample_input(encoder: nn.Module) -> torch.Tensor:
    """A normalised 1-image batch at the encoder's size (seeded, identical in every process)."""
    generator = torch.Generator().manual_seed(1)
    return torch.randn(1, 3, encoder.img_size, encoder.img_size, generator=generator)


def accelerated(encoder: nn.Module) -> nn.Module:
    from ultrasam.models.fast_attention import accelerate_image_encoder

    return accelerate_image_encoder(encoder)


def timed_alternating(encoders: dict[str, nn.Module], image: torch.Tensor, repeats: int):
    """Per encoder: wall-clock samples, process-CPU-time samples and its output, running them in turn.

    CPU time next to wall time shows contention: with ``n`` threads on an idle machine CPU
    seconds come to about ``n`` × wall seconds; much less means other processes took the cores.
    """
    wall: dict[str, list[float]] = {name: [] for name in encoders}
    cpu: dict[str, list[float]] = {name: [] for name in encoders}
    outputs = {}
    with torch.inference_mode():
        for name, encoder in encoders.items():  # warm-up
            outputs[name] = encoder(image)
        for _ in range(repeats):
            for name, encoder in encoders.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                encoder(image)
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu, outputs


def child_peak_rss(variant: str, args: argparse.Namespace) -> dict:
    """Run one forward pass of one encoder in a fresh interpreter and return its peak RSS."""
    command = [sys.executable, __file__, "--child", variant, "--model", args.model, "--threads", str(args.threads)]
    if args.checkpoint:
        command += ["--checkpoint", args.checkpoint]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``VmHWM``; ``ru_maxrss`` off Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource  # Unix only

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def run_child(variant: str, args: argparse.Namespace) -> None:
    encoder = build_encoder(args.model, args.checkpoint)
    if variant == "fast":
        encoder = accelerated(encoder)
    image = sample_input(encoder)
    before = peak_rss_bytes()
    with torch.inference_mode():
        encoder(image)
    print(json.dumps({"peak_rss": peak_rss_bytes(), "rss_before_forward": before}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    parser.add_argument("--checkpoint", help="real weights (SAM, MedSAM or UltraSam checkpoint)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per encoder (median reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS child processes")
    parser.add_argument("--child", choices=["reference", "fast"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        run_child(args.child, args)
        return 0

    memory = {} if args.no_memory else {v: child_peak_rss(v, args) for v in ("reference", "fast")}
    reference = build_encoder(args.model, args.checkpoint)
    fast = accelerated(copy.deepcopy(reference))
    image = sample_input(reference)
    wall, cpu, outputs = timed_alternating({"reference": reference, "fast": fast}, image, args.repeats)
    max_diff = (outputs["reference"] - outputs["fast"]).abs().max().item()
    median = {name: statistics.median(samples) for name, samples in wall.items()}

    what = f"encoder of {Path(args.checkpoint).name}" if args.checkpoint else f"{args.model} encoder, random init"
    print(
        f"\n{what}, {image.shape[-1]}² input, torch {torch.__version__}, {args.threads} threads, "
        f"median of {args.repeats} after 1 warm-up\n"
    )
    print(
        "| encoder | seconds (median) | all runs (s) | CPU s (median) | speed-up | peak RSS (GiB) "
        "| max abs diff vs reference |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in ("reference", "fast"):
        rss = f"{memory[name]['peak_rss'] / GIB:.2f}" if memory else "—"
        runs = ", ".join(f"{s:.2f}" for s in wall[name])
        diff = "—" if name == "reference" else f"{max_diff:.2e}"
        print(
            f"| {name} | {median[name]:.2f} | {runs} | {statistics.median(cpu[name]):.2f} | "
            f"{median['reference'] / median[name]:.2f}× | {rss} | {diff} |"
        )
    if memory:
        base = {name: memory[name]["rss_before_forward"] / GIB for name in memory}
        print(
            f"\nPeak RSS after building the model, before the forward pass: "
            f"{base['reference']:.2f} GiB (reference), {base['fast']:.2f} GiB (fast)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
