"""What a conversion did, so nothing is dropped silently: counts, skipped pairs with reasons, notes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Problem:
    """A raw file left out, and why."""

    path: str
    reason: str


@dataclass
class ConversionReport:
    """Outcome of converting one dataset.

    ``skipped``: bad pairs (missing or unreadable mask, size mismatch, ...), not converted.
    ``excluded``: files left out on purpose (e.g. BUSI ``normal`` images, which have no lesion).
    ``empty``: converted images that carry no instance (only when asked to keep them).
    """

    dataset: str
    coco_path: Path | None = None
    images: int = 0
    instances: int = 0
    skipped: list[Problem] = field(default_factory=list)
    excluded: list[Problem] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    coco: dict[str, Any] | None = field(default=None, repr=False)

    def skip(self, path: str | Path, reason: str) -> None:
        self.skipped.append(Problem(str(path), reason))

    def exclude(self, path: str | Path, reason: str) -> None:
        self.excluded.append(Problem(str(path), reason))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def summary(self) -> str:
        """Human-readable summary; every skipped file is listed with its reason."""
        lines = [f"{self.dataset}: {self.images} images, {self.instances} instances"]
        if self.coco_path is not None:
            lines[0] += f" -> {self.coco_path}"
        if self.empty:
            lines.append(f"  {len(self.empty)} images kept without any instance")
        for reason, count in Counter(p.reason for p in self.excluded).items():
            lines.append(f"  excluded {count}: {reason}")
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)}:")
            lines.extend(f"    {p.path}: {p.reason}" for p in self.skipped)
        else:
            lines.append("  skipped 0")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "coco_path": str(self.coco_path) if self.coco_path else None,
            "images": self.images,
            "instances": self.instances,
            "skipped": [vars(p) for p in self.skipped],
            "excluded": [vars(p) for p in self.excluded],
            "empty": list(self.empty),
            "notes": list(self.notes),
        }
