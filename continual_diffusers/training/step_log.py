"""`StepLog`: what one optimizer step of the training loop logs to the trackers (and its progress bar)."""

from __future__ import annotations


class StepLog:
    """Collects an optimizer step's micro-batches (`add`), then gives the tracker values (`values`): loss (the mean
    over gradient accumulation), lr, task, [nonfinite_skipped, grad_norm, energy_mean, penalty, ema_decay], and the
    strategy's own values."""

    def __init__(self, task_id: int):
        self.task_id = task_id
        self.loss = 0.0
        self.energies: list[float] = []
        self.penalties: list[float] = []

    def add(self, loss: float, energy_mean: float | None, penalty) -> None:
        """One micro-batch: its share of the step's loss, its mean energy (energy models) and the strategy's
        penalty."""
        self.loss += loss
        if energy_mean is not None:
            self.energies.append(energy_mean)
        if penalty is not None:
            self.penalties.append(penalty.detach().item())

    def values(self, lr: float, fault: str | None, grad_norm, ema, strategy) -> dict:
        logs = {"loss": self.loss, "lr": lr, "task": self.task_id}
        if fault is not None:
            logs["nonfinite_skipped"] = 1
        if grad_norm is not None:
            logs["grad_norm"] = float(grad_norm)
        if self.energies:
            logs["energy_mean"] = sum(self.energies) / len(self.energies)
        if self.penalties:
            logs["penalty"] = sum(self.penalties) / len(self.penalties)
        if ema is not None:
            logs["ema_decay"] = ema.cur_decay_value or 0.0
        logs.update(strategy.log_values())
        return logs
