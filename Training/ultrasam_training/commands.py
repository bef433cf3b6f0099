"""Training-side sub-commands of the ``ultrasam`` console script.

``ultrasam.cli`` imports this module and calls ``register``. Each entry of ``COMMAND_MODULES``
is a module with its own ``register(subparsers)``; add a module here to add a command. A listed
module that does not exist yet in this checkout is skipped, so commands can land one by one.
"""

from __future__ import annotations

import argparse
import importlib

COMMAND_MODULES = (
    "ultrasam_training.data.cli",
    "ultrasam_training.train.cli",
    "ultrasam_training.evaluation.cli",
    "ultrasam_training.evaluation.compare_cli",
    "ultrasam_training.downstream.cli",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Register every training-side command module's parser."""
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(subparsers)
