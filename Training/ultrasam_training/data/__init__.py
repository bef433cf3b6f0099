"""US-43d data pipeline: dataset registry, converters to COCO, and the tools between conversion and training.

Typical use::

    from ultrasam_training.data import build_shared_splits, load_coco, validate
    paths = build_shared_splits("../shared/data", "work_dirs/data")   # train/val/test_* COCO files
    problems = validate(paths["train"], check_files=True)
"""

from ultrasam_training.data.agnostic import make_class_agnostic
from ultrasam_training.data.build import build_all, build_shared_splits
from ultrasam_training.data.coco import CocoBuilder, decode_annotation_mask, load_coco, resolve_image_path, write_coco
from ultrasam_training.data.convert import ConvertOptions, run_converter
from ultrasam_training.data.errors import DatasetError
from ultrasam_training.data.filters import cap_instances, filter_small_objects
from ultrasam_training.data.merge import merge_cocos
from ultrasam_training.data.split import apply_splits, split_train_val
from ultrasam_training.data.stats import compute_stats, plot_stats
from ultrasam_training.data.validate import validate

__all__ = [
    "CocoBuilder",
    "ConvertOptions",
    "DatasetError",
    "apply_splits",
    "build_all",
    "build_shared_splits",
    "cap_instances",
    "compute_stats",
    "decode_annotation_mask",
    "filter_small_objects",
    "load_coco",
    "make_class_agnostic",
    "merge_cocos",
    "plot_stats",
    "resolve_image_path",
    "run_converter",
    "split_train_val",
    "validate",
    "write_coco",
]
