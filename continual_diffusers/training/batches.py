"""Which examples each process sees at each micro-step of a task: a pure function of (seed, task, step).

The task's examples are visited in a stream of epoch permutations (epoch e uses a permutation seeded by
(seed, task_id, e)); global micro-batch j is the slice [j·G, (j+1)·G) of that stream, with G = per-device batch ×
number of processes, and process r takes its contiguous share. Resuming at micro-step j needs nothing but j, every
process sees a different shard, and the last partial batch of an epoch is completed from the next permutation
(so all batches have the same size, as DDP requires).

A micro-batch is those examples, then any replayed rows the strategy adds (`TrainingBatch`), with its noise and
timesteps drawn for all rows at once. Its forward/backward may run in several passes over parts of its rows
(`pass_slices`): each pass back-propagates its rows' share of the batch's mean loss, so the gradients add up to the
whole batch's while the activations held at once are those of one pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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


@dataclass
class TrainingBatch:
    """One micro-batch, every random draw made: the task's examples first, then `num_replay` replayed rows.

    Attributes:
        x0: clean images (B, C, H, W).
        noise, t: the objective's draws for all B rows (`DenoisingObjective.draw`): (B, C, H, W) and (B,).
        cond: the UNet's conditioning kwargs after classifier-free-guidance dropout, per-row tensors.
        weights: (B,) loss weight per row (replayed rows: the strategy's `loss_weight`), or None: all 1.
        num_replay: replayed rows, the last ones.
    """

    x0: torch.Tensor
    noise: torch.Tensor
    t: torch.Tensor
    cond: dict = field(default_factory=dict)
    weights: torch.Tensor | None = None
    num_replay: int = 0

    @property
    def num_rows(self) -> int:
        return self.x0.shape[0]

    def rows(self, part: slice) -> TrainingBatch:
        """The rows `part` of the batch (replayed rows counted among them)."""
        start, stop, _ = part.indices(self.num_rows)
        return TrainingBatch(
            self.x0[part], self.noise[part], self.t[part], {k: v[part] for k, v in self.cond.items()},
            None if self.weights is None else self.weights[part],
            max(0, stop - max(start, self.num_rows - self.num_replay)),
        )  # fmt: skip


def pass_slices(num_rows: int, rows_per_pass: int) -> list[slice]:
    """Split rows [0, num_rows) into consecutive passes of `rows_per_pass` rows and a last, smaller one for the
    rest: 54 rows at 32 per pass → 32 + 22. Full passes rather than near-equal ones (27 + 27): an energy model's
    double-backward pass costs less per row at 32 rows than at 27 on the CPU (63.5 vs 66.6 ms, 1.12 M-parameter
    UNet at 32×32×3, one thread: `python benchmarks/bench_training.py --pass_rows 22 27 32 54 --energy
    --layers_per_block 1`); score passes cost the same per row at either size."""
    if rows_per_pass < 1:
        raise ValueError(f"rows_per_pass must be >= 1, got {rows_per_pass}")
    return [slice(start, min(start + rows_per_pass, num_rows)) for start in range(0, max(num_rows, 1), rows_per_pass)]
