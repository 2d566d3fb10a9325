"""The continual-learning strategy contract: seven lifecycle hooks, each a no-op by default, plus state.

| hook                                  | called                                   | used by                          |
|---------------------------------------|------------------------------------------|----------------------------------|
| before_task(model, task_id, apply_ema)| before the task's optimizer is built     | LoRA, freezing, teacher snapshot |
| replay_batch(batch_size, generator)   | every micro-batch; a batch or None       | replay, generative replay        |
| replay_share(task_id), replay_rows(n) | replayed rows inside a fixed-size batch  | buffer replay                    |
| penalty(model, out) -> Tensor | None  | every micro-batch, added to the loss     | EWC, SI, distillation            |
| after_optimizer_step(model)           | after every optimizer step               | SI's path integral               |
| discard_step(model)                   | a non-finite step skipped, not applied   | SI (drops the step's path)       |
| after_task(model, context)            | after the task's last step, before export| Fisher estimate, buffer filling  |
| log_values() -> dict[str, float]      | after every optimizer step, logged       | generative replay's cost         |

`apply_ema` is None, or (with --use_ema) a function that writes the EMA weights into a copy of the model: a
teacher snapshot may use the averaged weights without the strategy knowing how the EMA is kept.

Hooks return values and the trainer applies them; no hook mutates trainer state. The trainer builds the
optimizer after `before_task`, so parameter freezing needs no optimizer hook. `state_dict()` returns tensors and
JSON-able values only (the checkpoint writes tensors to safetensors and the rest to JSON: nothing is pickled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..objectives import DenoisingObjective, LossOutput
from .context import StrategyConfig, StrategyContext


@dataclass
class TaskContext:
    """What `after_task` may need about the task that just ended."""

    task_id: int
    dataset: Any  # data.TaskDataset of the task's ORIGINAL data (never mixed with replay)
    objective: DenoisingObjective
    encode_condition: Any  # callable(batch) -> UNet kwargs, CFG dropout not applied
    device: torch.device
    seed: int


class ContinualStrategy:
    name = "naive"
    # Its options (a `StrategyConfig` dataclass): the CLI adds their flags and builds the strategy from them.
    config: type[StrategyConfig] | None = None

    @property
    def penalty_reads_output(self) -> bool:
        """Does `penalty` read its `out` (the batch's predictions, e.g. a distillation loss on the replayed rows)?
        Then the trainer runs each batch in one forward/backward pass; otherwise it may split a batch into passes
        (`TrainConfig.rows_per_pass`) and adds the penalty once. A strategy that overrides `penalty` is assumed to
        read it unless it declares `penalty_reads_output = False` (EWC and SI read only the parameters)."""
        return type(self).penalty is not ContinualStrategy.penalty

    def before_task(self, model: nn.Module, task_id: int, apply_ema=None) -> None:
        return None

    def replay_batch(self, batch_size: int, generator: torch.Generator) -> dict | None:
        return None

    def replay_share(self, task_id: int | None) -> float | None:
        """The expected share of replayed rows in a batch of fixed size while training task `task_id`, in [0, 1)
        (`TrainConfig.replay_rows = "within"`; None: before any task). 0 for a strategy that replays nothing;
        None for one that cannot replay a given number of rows (`replay_rows`), which "within" then refuses."""
        return 0.0 if type(self).replay_batch is ContinualStrategy.replay_batch else None

    def replay_rows(self, num: int, generator: torch.Generator) -> dict | None:
        """Exactly `num` replayed rows, as `replay_batch` returns them (None for num = 0)."""
        if num == 0:
            return None
        raise NotImplementedError(f"strategy {self.name!r} cannot replay a given number of rows")

    def penalty(self, model: nn.Module, out: LossOutput) -> torch.Tensor | None:
        return None

    def after_optimizer_step(self, model: nn.Module) -> None:
        return None

    def discard_step(self, model: nn.Module) -> None:
        """The optimizer step just computed was skipped (--on_nonfinite skip): forget what it left behind."""
        return None

    def after_task(self, model: nn.Module, context: TaskContext) -> None:
        return None

    def log_values(self) -> dict[str, float]:
        """Scalars the trainer logs after every optimizer step (generative replay's extra-compute accounting)."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"strategy {self.name!r} has no state but the checkpoint holds {sorted(state)}")


@dataclass
class NaiveConfig(StrategyConfig):
    """Naive fine-tuning has no options."""

    name = "naive"

    def build(self, context: StrategyContext) -> Naive:
        return Naive()


class Naive(ContinualStrategy):
    """Plain sequential fine-tuning: the lower bound every method is compared with."""

    name = "naive"
    config = NaiveConfig
