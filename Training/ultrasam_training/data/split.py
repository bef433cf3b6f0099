"""Train/val/test splits at patient level, seeded, keeping the splits a dataset publishes.

The released tool split each dataset image by image with an unseeded shuffle, so frames of one
patient or video could land in both train and val. Here the unit is the patient: images with the
same ``(dataset, patient_id)`` always go together; an image without ``patient_id`` is its own unit.
Images whose ``split`` is ``val`` or ``test`` (an official split of the source) stay there.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from ultrasam_training.data.errors import DatasetError

SPLITS = ("train", "val", "test")


@dataclass
class SplitResult:
    """COCO dict per split, plus what a fixed split list could not place."""

    parts: dict[str, dict]
    missing: dict[str, list[str]] = field(default_factory=dict)  #: listed but not in the COCO
    unassigned: list[str] = field(default_factory=list)  #: in the COCO but in no list

    def __getitem__(self, split: str) -> dict:
        return self.parts[split]

    def counts(self) -> dict[str, int]:
        return {name: len(part["images"]) for name, part in self.parts.items()}


def subset(coco: Mapping[str, Any], image_ids: Iterable[int]) -> dict:
    """The images ``image_ids`` (in the COCO's order) with their annotations; ids are kept."""
    wanted = set(image_ids)
    images = [image for image in coco["images"] if image["id"] in wanted]
    annotations = [a for a in coco["annotations"] if a["image_id"] in wanted]
    result = {key: value for key, value in coco.items() if key not in ("images", "annotations")}
    result.update(images=images, annotations=annotations)
    return result


def patient_key(image: Mapping[str, Any]) -> tuple[str, str]:
    """The unit of splitting: ``(dataset, patient_id)``, or the image itself when no patient is known."""
    patient = image.get("patient_id")
    own = f"image:{image.get('source_path', image.get('file_name', image['id']))}"
    return str(image.get("dataset", "")), str(patient) if patient not in (None, "") else own


def split_train_val(coco: Mapping[str, Any], *, val_fraction: float = 0.05, seed: int = 0) -> SplitResult:
    """Seeded patient-level train/val split per dataset; official ``val``/``test`` images are kept.

    In each dataset about ``val_fraction`` of the not-officially-placed images go to val, whole
    patients at a time (shuffled by a generator seeded with ``seed`` and the dataset name), never
    every patient.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be in [0, 1), not {val_fraction}")
    assigned: dict[str, list[int]] = {name: [] for name in SPLITS}
    free: dict[str, dict[tuple[str, str], list[int]]] = {}
    for image in coco["images"]:
        official = image.get("split")
        if official in ("val", "test"):
            assigned[official].append(image["id"])
        else:
            free.setdefault(str(image.get("dataset", "")), {}).setdefault(patient_key(image), []).append(image["id"])
    for dataset in sorted(free):
        groups = free[dataset]
        keys = sorted(groups)
        random.Random(f"{seed}:{dataset}").shuffle(keys)  # per dataset: adding one leaves the others' splits alone
        total = sum(len(ids) for ids in groups.values())
        target = total - int(total * (1.0 - val_fraction)) if val_fraction > 0 else 0
        val_count = 0
        for position, key in enumerate(keys):
            if val_count >= target or position == len(keys) - 1:
                assigned["train"].extend(groups[key])
            else:
                assigned["val"].extend(groups[key])
                val_count += len(groups[key])
    return SplitResult({name: subset(coco, ids) for name, ids in assigned.items()})


def apply_splits(
    coco: Mapping[str, Any], section: Mapping[str, Sequence[str]], *, key: str = "source_path"
) -> SplitResult:
    """Split by fixed lists of ``source_path`` values (one section of ``splits.json``).

    Listed paths absent from the COCO (e.g. BUSI ``normal`` images, excluded by the converter)
    are returned in ``missing``; images listed nowhere in ``unassigned``. A path listed in two
    splits is an error.
    """
    split_of: dict[str, str] = {}
    for split, paths in section.items():
        for path in paths:
            if path in split_of and split_of[path] != split:
                raise DatasetError(f"{path} is listed in both {split_of[path]!r} and {split!r}")
            split_of[path] = split
    present = {image.get(key) for image in coco["images"]}
    assigned: dict[str, list[int]] = {split: [] for split in section}
    unassigned = []
    for image in coco["images"]:
        split = split_of.get(image.get(key))
        if split is None:
            unassigned.append(str(image.get(key)))
        else:
            assigned[split].append(image["id"])
    missing = {split: sorted(p for p in paths if p not in present) for split, paths in section.items()}
    return SplitResult(
        {split: subset(coco, ids) for split, ids in assigned.items()},
        missing={split: paths for split, paths in missing.items() if paths},
        unassigned=unassigned,
    )


def patients_shared(parts: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """Patients that appear in more than one split (should be empty for a patient-level split)."""
    seen: dict[tuple[str, str], set[str]] = {}
    for split, part in parts.items():
        for image in part["images"]:
            seen.setdefault(patient_key(image), set()).add(split)
    return {patient: sorted(splits) for patient, splits in seen.items() if len(splits) > 1}
