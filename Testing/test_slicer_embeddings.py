"""One embedding cache: the library's thread-safe ``EmbeddingStore``, shared by the Slicer logic's predictors.

The module encodes slices on a worker thread while the GUI thread's predictor answers clicks, both
through one store. These tests hammer the store from several threads, then let two real encoders
(LiteMedSAM) share one and check that every stored embedding is exactly the one a lone encoder
computes for that frame.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "SlicerUltraSam"))

from ultrasam.embedding_store import EmbeddingStore  # noqa: E402


def run_threads(targets) -> list[BaseException]:
    """Run each target on its own thread, started together; the exceptions they raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(targets))

    def guarded(target):
        try:
            barrier.wait()
            target()
        except BaseException as exc:  # collected: a failure on a thread must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_store_survives_concurrent_writers_and_readers_uncorrupted():
    store = EmbeddingStore(capacity=16)
    seen_wrong = []

    def writer(offset):
        def work():
            for n in range(2000):
                key = (offset, n % 40)
                store.put(key, ("value of", key), window=None if n % 2 else (0.0, 1.0))

        return work

    def reader():
        for n in range(4000):
            key = (n % 3, n % 40)
            for window in (None, (0.0, 1.0)):
                value = store.get(key, window)
                if value is not None and value != ("value of", key):
                    seen_wrong.append((key, value))
                store.contains(key, window)
            assert len(store) <= 16

    assert run_threads([writer(0), writer(1), writer(2), reader, reader]) == []
    assert not seen_wrong and len(store) == 16
    keys = list(store._items)
    assert len(set(keys)) == 16 and all(store.get(*k) == ("value of", k[0]) for k in keys)
    store.clear()
    assert len(store) == 0


def test_store_refuses_a_useless_capacity():
    for capacity in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="at least one"):
            EmbeddingStore(capacity)


@pytest.fixture(scope="module")
def litemedsam(litemedsam_checkpoint):
    from ultrasam.models import open_model

    return open_model(litemedsam_checkpoint, device="cpu")


def test_two_threads_encoding_into_one_store_leave_exact_embeddings(litemedsam):
    """The logic's encoder (a worker) and its click predictor (this thread) encode the same two frames
    at once into the logic's store; afterwards each frame is stored once, bit-identical to a lone
    predictor's embedding, and clicking again reuses it instead of encoding."""
    import torch

    from ultrasam.predictor import Predictor
    from SlicerUltraSamLib import SlicerUltraSamLogic

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (96, 120), dtype=np.uint8) for _ in range(2)]
    logic = SlicerUltraSamLogic(model=litemedsam, cacheSize=4)
    clicks = logic.predictor
    jobs = [(("cine", n), lambda n=n: frames[n]) for n in range(2)]

    def click_side():
        for n in (1, 0):
            clicks.set_image(frames[n], key=("cine", n))
            assert clicks.predict(box=[10, 10, 60, 60]).masks.shape == (1, 1, 96, 120)

    assert run_threads([lambda: logic.encode(jobs), click_side]) == []

    lone = Predictor(litemedsam)
    assert len(logic.store) == 2
    for n, frame in enumerate(frames):
        lone.set_image(frame)
        stored = logic.store.get(("cine", n))
        assert torch.equal(stored.features, lone.embedding), n
        assert stored.geometry == lone.geometry
    encoded_before = clicks.encoded
    for n in (0, 1):
        clicks.set_image(frames[n], key=("cine", n))
    assert clicks.encoded == encoded_before  # both now come from the shared store
