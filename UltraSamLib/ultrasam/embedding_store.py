"""One thread-safe LRU of image embeddings, which several predictors may share.

Encoding an image is the slow step (≈0.5–1 s for LiteMedSAM on a CPU, seconds for ViT-b); a new
prompt only runs the decoder (milliseconds). A :class:`~ultrasam.predictor.Predictor` keeps its
embeddings in a store; giving two predictors the same store lets one thread encode ahead (the next
slices of a volume) while another answers clicks from what is already there, with no second cache
to keep in step. Each predictor keeps its own *current* image, so sharing a store shares only
finished embeddings.

Entries are keyed by ``(image key, intensity window)``: the same pixels shown under another window
are another image to the encoder. Values are opaque to the store. Imports nothing heavy (no
torch), so front ends can create and query a store before any model is loaded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Hashable

__all__ = ["EmbeddingStore"]


class EmbeddingStore:
    """At most ``capacity`` embeddings, least recently used evicted first; every method holds a lock."""

    def __init__(self, capacity: int = 8) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"an embedding store holds at least one embedding; capacity={capacity!r}")
        self.capacity = capacity
        self._items: "OrderedDict[tuple[Hashable, object], object]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, window: tuple[float, float] | None = None):
        """The embedding stored for ``key`` under ``window`` (now the most recently used), or None."""
        with self._lock:
            value = self._items.get((key, window))
            if value is not None:
                self._items.move_to_end((key, window))
            return value

    def put(self, key: Hashable, value: object, window: tuple[float, float] | None = None) -> None:
        """Store ``value`` as the most recently used entry, evicting beyond :attr:`capacity`."""
        with self._lock:
            self._items[(key, window)] = value
            self._items.move_to_end((key, window))
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def contains(self, key: Hashable, window: tuple[float, float] | None = None) -> bool:
        """Whether ``key`` is stored under ``window`` (does not count as a use)."""
        with self._lock:
            return (key, window) in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
