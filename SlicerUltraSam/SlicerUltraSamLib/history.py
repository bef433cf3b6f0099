"""Undo for segment edits: every operation remembers how to put back exactly what it changed.

Slicer has no undo for markups and Segment Editor's undo only covers its own edits, so the module
keeps its own stack. An operation is a list of undo steps recorded while it runs (restore a
slice's previous content, remove a segment it created, ...); undoing runs them in reverse. Slice
contents are stored bit-packed (8× smaller) and not at all when the slice was empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Hashable

import numpy as np

__all__ = ["EditHistory", "Operation", "PackedMask"]


@dataclass(frozen=True)
class PackedMask:
    """A bool 2D mask stored with ``np.packbits``; ``None`` bits mean an all-false mask."""

    shape: tuple[int, int]
    bits: np.ndarray | None

    @classmethod
    def pack(cls, mask: np.ndarray) -> "PackedMask":
        mask = np.asarray(mask, dtype=bool)
        return cls(tuple(mask.shape), np.packbits(mask, axis=None) if mask.any() else None)

    def unpack(self) -> np.ndarray:
        if self.bits is None:
            return np.zeros(self.shape, dtype=bool)
        count = int(np.prod(self.shape))
        return np.unpackbits(self.bits, count=count).astype(bool).reshape(self.shape)


@dataclass
class Operation:
    """One user-visible edit (a prompt change, a propagation) and the steps that revert it."""

    description: str
    steps: list[Callable[[], None]] = field(default_factory=list)
    _recorded: set = field(default_factory=set, repr=False)

    def on_undo(self, step: Callable[[], None]) -> None:
        self.steps.append(step)

    def on_undo_once(self, key: Hashable, make_step: Callable[[], Callable[[], None]]) -> None:
        """Record ``make_step()`` the first time ``key`` is seen: state taken before the operation's
        first change to something (a segment's status), restored after all its later steps."""
        if key not in self._recorded:
            self._recorded.add(key)
            self.steps.append(make_step())

    def revert(self) -> None:
        for step in reversed(self.steps):
            step()


class EditHistory:
    """A bounded stack of :class:`Operation`; the oldest are forgotten beyond ``limit``."""

    def __init__(self, limit: int = 30) -> None:
        self.limit = limit
        self._operations: list[Operation] = []

    def push(self, operation: Operation) -> None:
        if not operation.steps:
            return
        self._operations.append(operation)
        del self._operations[: max(0, len(self._operations) - self.limit)]

    @property
    def can_undo(self) -> bool:
        return bool(self._operations)

    def undo(self) -> str | None:
        """Revert the last operation; returns its description, or None when there is nothing to undo."""
        if not self._operations:
            return None
        operation = self._operations.pop()
        operation.revert()
        return operation.description

    def clear(self) -> None:
        self._operations.clear()

    def __len__(self) -> int:
        return len(self._operations)
