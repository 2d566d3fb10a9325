"""Which examples each process sees at each micro-step of a task: a pure function of (seed, task, step).

The task's examples are visited in a stream of epoch permutations (epoch e uses a permutation seeded by
(seed, task_id, e)); global micro-batch j is the slice [j·G, (j+1)·G) of that stream, with G = per-device batch ×
number of processes, and process r takes its contiguous share. Resuming at micro-step j needs nothing but j, every
process sees a different shard, and the last partial batch of an epoch is completed from the next permutation
(so all batches have the same size, as DDP requires).
"""

from __future__ import annotations

import math

import torch

from ..utils.seed import make_generator


class BatchSchedule:
    def __init__(self, num_examples: int, batch_size: int, num_processes: int, rank: int, seed: int, task_id: int):
        if num_examples < 1:
            raise ValueError("a task needs at least one example")
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.global_batch = batch_size * num_processes
        self.rank = rank
        self.seed = seed
        self.task_id = task_id
        self._perms: dict[int, torch.Tensor] = {}

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_examples / self.global_batch)

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            gen = make_generator(self.seed, "epoch-order", self.task_id, epoch)
            self._perms[epoch] = torch.randperm(self.num_examples, generator=gen)
        return self._perms[epoch]

    def indices(self, micro_step: int) -> torch.Tensor:
        """This process's example indices (batch_size,) for global micro-batch `micro_step`."""
        start = micro_step * self.global_batch + self.rank * self.batch_size
        positions = torch.arange(start, start + self.batch_size)
        epochs, offsets = positions // self.num_examples, positions % self.num_examples
        out = torch.empty_like(positions)
        for epoch in epochs.unique().tolist():  # at most two epochs meet in one batch
            rows = epochs == epoch
            out[rows] = self._perm(epoch)[offsets[rows]]
        return out
