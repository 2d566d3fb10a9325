"""Which examples each process sees at each micro-step of a task: a pure function of (seed, task, step).

The task's examples are visited in a stream of epoch permutations (epoch e uses a permutation seeded by
(seed, task_id, e)); global micro-batch j is the slice [j·G, (j+1)·G) of that stream, with G = per-device batch ×
number of processes, and process r takes its contiguous share. Resuming at micro-step j needs nothing but j, every
process sees a different shard, and the last partial batch of an epoch is completed from the next permutation
(so all batches have the same size, as DDP requires).

Replayed rows inside the batch (`TrainConfig.replay_rows = "within"`): with ρ expected replayed rows per batch of
B rows, micro-batch j holds R_j = ⌊(j+1)ρ⌋ − ⌊jρ⌋ replayed rows and C_j = B − R_j examples of the task, so the
replayed rows of any j consecutive batches add up to jρ within one row, and the task's stream advances by
jB − ⌊jρ⌋ examples per process in j steps (a pure function of j again); an epoch takes ⌈N / (P(B − ρ))⌉ steps.

A micro-batch is those examples, then any replayed rows the strategy adds (`TrainingBatch`), with its noise and
timesteps drawn for all rows at once. Its forward/backward may run in several passes over parts of its rows
(`pass_slices`): each pass back-propagates its rows' share of the batch's mean loss, so the gradients add up to the
whole batch's while the activations held at once are those of one pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import torch

from ..utils.seed import make_generator


class BatchSchedule:
    """The examples of one task for each micro-step. `replay_per_step`: ρ, the expected replayed rows inside each
    process's batch of `batch_size` rows (0: the batch is all task examples; replay, if any, is added to it); at most
    `batch_size` − 1, so every batch holds at least one example of the task."""

    def __init__(
        self,
        num_examples: int,
        batch_size: int,
        num_processes: int,
        rank: int,
        seed: int,
        task_id: int,
        replay_per_step: float = 0.0,
    ):
        if num_examples < 1:
            raise ValueError("a task needs at least one example")
        if not 0 <= replay_per_step <= batch_size - 1:
            raise ValueError(
                f"replay_per_step must be in [0, batch_size - 1 = {batch_size - 1}], got {replay_per_step}"
            )
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.num_processes = num_processes
        self.global_batch = batch_size * num_processes
        self.rank = rank
        self.seed = seed
        self.task_id = task_id
        # exact arithmetic: every process must derive the same R_j, and resuming must too
        self.replay_per_step = Fraction(replay_per_step).limit_denominator(10**6)
        self._perms: dict[int, torch.Tensor] = {}

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_examples / (self.num_processes * (self.batch_size - self.replay_per_step)))

    def replay_rows(self, micro_step: int) -> int:
        """R_j: replayed rows inside micro-batch j (0 unless `replay_per_step`)."""
        rho = self.replay_per_step
        return math.floor((micro_step + 1) * rho) - math.floor(micro_step * rho)

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            gen = make_generator(self.seed, "epoch-order", self.task_id, epoch)
            self._perms[epoch] = torch.randperm(self.num_examples, generator=gen)
        return self._perms[epoch]

    def indices(self, micro_step: int) -> torch.Tensor:
        """This process's example indices (C_j,) for global micro-batch `micro_step`: batch_size of them, less the
        replayed rows inside the batch (`replay_rows`)."""
        count = self.batch_size - self.replay_rows(micro_step)
        done = micro_step * self.batch_size - math.floor(micro_step * self.replay_per_step)  # per process, so far
        start = self.num_processes * done + self.rank * count
        positions = torch.arange(start, start + count)
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
    """Split rows [0, num_rows) into ⌈num_rows / rows_per_pass⌉ consecutive passes of near-equal size (sizes differ
    by at most one): 54 rows at 32 per pass → 27 + 27.

    Equal passes, not full ones then the rest (32 + 22): passes of one size reuse the memory the previous pass
    freed, while alternating sizes fragment the heap. On the 5-task digits job with energy models (32×32×3, batch
    32, 200 replayed images) the peak RSS was 1,636 MiB with 27 + 27 and 1,905 MiB with 32 + 22, although a pass of
    32 rows costs about 5 % less CPU per row than one of 27 (`python benchmarks/bench_training.py --pass_rows 22 27
    32 54 --energy --layers_per_block 1`); `--replay_rows within` keeps every batch at the batch size instead."""
    if rows_per_pass < 1:
        raise ValueError(f"rows_per_pass must be >= 1, got {rows_per_pass}")
    num_passes = max(1, math.ceil(num_rows / rows_per_pass))
    bounds = [round(i * num_rows / num_passes) for i in range(num_passes + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]
