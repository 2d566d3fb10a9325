"""`CombinedStrategy`: several strategies behind the one hook contract (e.g. EWC + replay), so the trainer needs no
special cases. Hooks run in the given order; penalties add up; replay batches are concatenated; state keys are
prefixed with each strategy's name."""

from __future__ import annotations

import torch
from torch import nn

from ..data.batches import concat_batches
from ..objectives import LossOutput
from ..utils.errors import UserInputError
from .base import ContinualStrategy, TaskContext


def _concat(batches: list[dict]) -> dict:
    """One replay batch from several strategies' batches, in order; different loss weights become one per row."""
    out = concat_batches(batches, "replay batches of one run must all carry labels or none")
    weights = [float(b.get("loss_weight", 1.0)) for b in batches]
    if len(set(weights)) > 1:
        out["loss_weight"] = torch.cat([torch.full((len(b["images"]),), w) for b, w in zip(batches, weights)])
    elif weights[0] != 1.0:
        out["loss_weight"] = weights[0]
    return out


class CombinedStrategy(ContinualStrategy):
    """Runs `strategies` in order at every hook.

    Args:
        strategies: at least one strategy; names must be distinct (they prefix the state keys).
    """

    def __init__(self, strategies: list[ContinualStrategy]):
        names = [s.name for s in strategies]
        if not strategies or len(set(names)) != len(names):
            raise ValueError(f"need at least one strategy and distinct names, got {names}")
        self.strategies = list(strategies)
        self.name = "+".join(names)

    def before_task(self, model: nn.Module, task_id: int, apply_ema=None) -> None:
        for s in self.strategies:
            s.before_task(model, task_id, apply_ema=apply_ema)

    def replay_batch(self, batch_size: int, generator: torch.Generator) -> dict | None:
        batches = [b for s in self.strategies if (b := s.replay_batch(batch_size, generator)) is not None]
        return None if not batches else batches[0] if len(batches) == 1 else _concat(batches)

    def penalty(self, model: nn.Module, out: LossOutput) -> torch.Tensor | None:
        terms = [p for s in self.strategies if (p := s.penalty(model, out)) is not None]
        return sum(terms[1:], terms[0]) if terms else None

    def after_optimizer_step(self, model: nn.Module) -> None:
        for s in self.strategies:
            s.after_optimizer_step(model)

    def discard_step(self, model: nn.Module) -> None:
        for s in self.strategies:
            s.discard_step(model)

    def after_task(self, model: nn.Module, context: TaskContext) -> None:
        for s in self.strategies:
            s.after_task(model, context)

    def log_values(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for s in self.strategies:
            values.update(s.log_values())
        return values

    def state_dict(self) -> dict:
        """Each strategy's flat state with keys prefixed "<name>/"."""
        return {f"{s.name}/{k}": v for s in self.strategies for k, v in s.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        names = {s.name for s in self.strategies}
        unknown = sorted({k.split("/", 1)[0] for k in state} - names)
        if unknown:
            raise UserInputError(
                f"the checkpoint holds state for strategies {unknown} not enabled now ({self.name}); "
                "resume with the strategy flags the run was started with"
            )
        for s in self.strategies:
            prefix = f"{s.name}/"
            s.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
