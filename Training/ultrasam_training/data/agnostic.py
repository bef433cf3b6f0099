"""Class-agnostic COCO: every instance becomes category 1 ``object``, as UltraSam trains and evaluates.

Unlike the released tool, which overwrote its input, this returns a new dict (write it to a new
file); each annotation keeps its former category name in ``source_category``.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

from ultrasam_training.data.coco import AGNOSTIC_CATEGORY


def make_class_agnostic(coco: Mapping[str, Any]) -> dict:
    """A copy of ``coco`` with one category ``object``; annotations keep ``source_category``."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    result = copy.deepcopy(dict(coco))
    result["categories"] = [dict(AGNOSTIC_CATEGORY)]
    for annotation in result["annotations"]:
        annotation.setdefault("source_category", names.get(annotation["category_id"], str(annotation["category_id"])))
        annotation["category_id"] = AGNOSTIC_CATEGORY["id"]
    return result
