"""The NaN guard of the training loop (--on_nonfinite): decides, identically on every process, whether an optimizer
step is taken, skipped (`skip`) or stops the run (`stop`, `NonFiniteError`) before a non-finite update is made."""

from __future__ import annotations

import math

import torch

from ..utils.errors import NonFiniteError
from ..utils.logging import get_logger
from . import checkpoint as ckpt

logger = get_logger(__name__)


def nonfinite_guard(trainer, fault: str | None, grad_norm, task_id: int) -> str | None:
    """At the end of gradient accumulation: what was non-finite on any process (`fault`: the loss, or the gradient
    norm unless fp16's GradScaler handles overflows), or None. With --on_nonfinite stop that raises
    `NonFiniteError` before the optimizer step, so no non-finite update and no checkpoint of it is made."""
    acc, pos = trainer.accelerator, trainer.position
    if fault is None and grad_norm is not None and acc.scaler is None and not math.isfinite(float(grad_norm)):
        fault = f"gradient norm ({float(grad_norm)})"
    if acc.num_processes > 1:  # every process must take the same decision
        flags = acc.gather(torch.tensor([fault is not None], dtype=torch.float32, device=acc.device))
        if fault is None and bool(flags.any()):
            fault = "loss or gradient on another process"
    if fault is None:
        return None
    where = f"step {pos.step_in_task + 1} of task {task_id} (global step {pos.global_step + 1})"
    if trainer.cfg.on_nonfinite == "skip":
        logger.warning("non-finite %s at %s: step skipped (--on_nonfinite skip)", fault, where)
        return fault
    raise NonFiniteError(
        f"non-finite {fault} at {where}; training stopped before the update, "
        f"{ckpt.last_good(trainer.cfg.output_dir)}. Lower --learning_rate or pass --on_nonfinite skip"
    )
