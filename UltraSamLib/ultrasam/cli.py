"""The ``ultrasam`` console script: one sub-command per module in ``ultrasam.commands``.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> int``. Training commands live in the optional ``ultrasam_training`` package
(not shipped inside Slicer); when it is missing they say so instead of crashing.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# Idle OpenMP threads sleep instead of spinning: on a shared or busy CPU, spinning threads made the
# encoder's many small parallel regions 2-3x slower. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from typing import Sequence

from ultrasam.errors import UltraSamError

LIBRARY_COMMANDS = (
    "ultrasam.commands.segment",
    "ultrasam.commands.segment_volume",
    "ultrasam.commands.weights_cmd",
    "ultrasam.commands.demo",
)
TRAINING_COMMANDS = ("ultrasam_training.commands",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ultrasam", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in LIBRARY_COMMANDS + TRAINING_COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if name in TRAINING_COMMANDS and exc.name and exc.name.startswith(("ultrasam_training", "mmengine")):
                continue  # training extras not installed: library commands still work
            if name in LIBRARY_COMMANDS and exc.name == name:
                continue  # command not built yet in this checkout
            raise
        module.register(subparsers)
    return parser


def describe_os_error(exc: OSError) -> str:
    """``Permission denied: /data/out.png`` rather than Python's ``[Errno 13] ...: '/data/out.png'``."""
    if not exc.strerror:
        return str(exc)
    names = " -> ".join(str(name) for name in (exc.filename, exc.filename2) if name)
    return f"{exc.strerror}: {names}" if names else exc.strerror


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UltraSamError as exc:
        print(f"ultrasam {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk, a folder gone read-only mid-run: one line, not a traceback
        print(f"ultrasam {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
