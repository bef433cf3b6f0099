"""Image embeddings shared between a background encoder and the decoder on the GUI thread.

Encoding a frame is the slow part (≈0.5–1 s for LiteMedSAM on a CPU, seconds for ViT-b); a new
click only runs the decoder (milliseconds). So embeddings live in one thread-safe LRU store: a
worker thread fills it for the working slice and its neighbours, and the predictor used for
prompts and propagation looks there before encoding. Only public ``Predictor`` methods are used
(``set_image``, ``set_embedding``, ``embedding``, ``geometry``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable, Iterable

import numpy as np

from ultrasam.predictor import Predictor

__all__ = ["EmbeddingStore", "StorePredictor", "encode_into"]


class EmbeddingStore:
    """LRU of ``key → (features, (H, W))``; safe to use from several threads."""

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._items: "OrderedDict[Hashable, tuple]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable):
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: Hashable, features, original_hw: tuple[int, int]) -> None:
        with self._lock:
            self._items[key] = (features, tuple(original_hw))
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class StorePredictor(Predictor):
    """A :class:`Predictor` whose keyed images come from (and go to) an :class:`EmbeddingStore`.

    Images given without a key are encoded as usual (content-hash cache of the base class).
    """

    def __init__(self, model, store: EmbeddingStore) -> None:
        super().__init__(model, cache_size=1)
        self.store = store
        self.encoded = 0  # how many frames this predictor had to encode itself (tests, status)

    def set_image(self, image: np.ndarray, key: Hashable | None = None, window=None) -> None:
        if key is None:
            super().set_image(image, key=None, window=window)
            return
        store_key = (key, window)
        cached = self.store.get(store_key)
        if cached is not None:
            self.set_embedding(*cached)
            return
        super().set_image(image, key=key, window=window)
        self.encoded += 1
        self.store.put(store_key, self.embedding, self.geometry.original_hw)


def encode_into(
    store: EmbeddingStore,
    model,
    items: Iterable[tuple[Hashable, Callable[[], np.ndarray]]],
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Encode every ``(key, image_fn)`` not yet in ``store``; returns how many were encoded.

    Safe on a worker thread: it uses its own predictor (the model's weights are only read) and
    touches the store only through its lock. ``should_stop`` is polled between frames.
    """
    encoder = Predictor(model, cache_size=1)
    count = 0
    for key, image_fn in items:
        if should_stop is not None and should_stop():
            break
        if (key, None) in store:
            continue
        encoder.set_image(image_fn(), key=key)
        store.put((key, None), encoder.embedding, encoder.geometry.original_hw)
        count += 1
    return count
