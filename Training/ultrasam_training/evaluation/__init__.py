"""Evaluation of any SAM-family model (or a trivial baseline) with the UltraSam paper's protocol.

* :func:`evaluate` — one model, one COCO file, one prompt kind -> :class:`EvaluationResult`
  (per-instance records + a summary row: class-agnostic COCO segm mAP/mAP@50, mean Dice/IoU,
  and with ``clicks`` the IoU after 1..N simulated clicks and NoC@85/90).
* :func:`evaluate_dataset` — several prompt kinds in one pass over the images (one encoding each).
* :func:`write_report` — Markdown/CSV/JSON tables, per-instance CSVs, COCO detections, plots.
* ``ultrasam evaluate`` — the command line (``cli.register``).
"""

from ultrasam_training.evaluation.errors import EvaluationError
from ultrasam_training.evaluation.reports import write_report
from ultrasam_training.evaluation.runner import EvaluationResult, InstanceRecord, evaluate, evaluate_dataset

__all__ = ["EvaluationError", "EvaluationResult", "InstanceRecord", "evaluate", "evaluate_dataset", "write_report"]
