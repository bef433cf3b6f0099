"""A seekable infinite sampler and the training loop that seeks it on resume.

mmengine's ``InfiniteSampler`` cannot jump: on resume ``IterBasedTrainLoop`` replays the data
loader for every finished iteration (loading and discarding all those batches). Here the
stream of samples is an explicit function of the global position ``draw``: epoch ``e`` of the
stream is a permutation seeded by ``(seed, e)``, rank ``r`` of ``W`` takes positions
``r, r + W, …``, and every index comes as ``(index, seed, draw)`` so the dataset can key its own
randomness (flip, prompts) on it. Resuming at iteration ``i`` starts at position ``i · B · W``.
"""

from __future__ import annotations

import logging
from typing import Iterator

import numpy as np
from mmengine.dataset.sampler import Sampler
from mmengine.dist import get_dist_info, sync_random_seed
from mmengine.logging import print_log
from mmengine.registry import DATA_SAMPLERS, LOOPS
from mmengine.runner.loops import IterBasedTrainLoop, _InfiniteDataloaderIterator


@DATA_SAMPLERS.register_module()
class SeededStreamSampler(Sampler):
    """Infinite shuffled stream of ``(index, seed, draw)``; :meth:`seek` jumps to a global position."""

    def __init__(self, dataset, shuffle: bool = True, seed: int | None = None) -> None:
        self.rank, self.world_size = get_dist_info()
        self.size = len(dataset)
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.start = 0
        self._epoch_cache: tuple[int, np.ndarray] | None = None

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of epoch ``epoch`` of the stream."""
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            order = (
                np.random.default_rng([self.seed & 0xFFFFFFFF, 1 << 20, epoch]).permutation(self.size)
                if self.shuffle
                else np.arange(self.size)
            )
            self._epoch_cache = (epoch, order)
        return self._epoch_cache[1]

    def seek(self, draw: int) -> None:
        """Start the next iteration over this sampler at global stream position ``draw``."""
        self.start = int(draw)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        position = self.start + self.rank
        while True:
            epoch, offset = divmod(position, self.size)
            yield int(self.permutation(epoch)[offset]), self.seed, position
            position += self.world_size

    def __len__(self) -> int:
        return self.size


@LOOPS.register_module()
class SeekingIterBasedTrainLoop(IterBasedTrainLoop):
    """``IterBasedTrainLoop`` that resumes by seeking the sampler instead of replaying batches."""

    def _skip_finished_iterations(self) -> None:
        sampler = getattr(self.dataloader, "sampler", None)
        if not hasattr(sampler, "seek"):
            print_log(f"sampler cannot seek: replaying {self._iter} batches", logger="current", level=logging.WARNING)
            for _ in range(self._iter):
                next(self.dataloader_iterator)
            return
        _, world_size = get_dist_info()
        sampler.seek(self._iter * self.dataloader.batch_size * world_size)
        self.dataloader_iterator = _InfiniteDataloaderIterator(self.dataloader)
        print_log(
            f"resuming the sample stream at iteration {self._iter} (position {sampler.start})",
            logger="current",
            level=logging.INFO,
        )

    def run(self):
        self.runner.call_hook("before_train")
        self.runner.call_hook("before_train_epoch")
        if self._iter > 0:
            self._skip_finished_iterations()
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            self.run_iter(next(self.dataloader_iterator))
            self._decide_current_val_interval()
            if (
                self.runner.val_loop is not None
                and self._iter >= self.val_begin
                and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)
            ):
                self.runner.val_loop.run()
        self.runner.call_hook("after_train_epoch")
        self.runner.call_hook("after_train")
        return self.runner.model
