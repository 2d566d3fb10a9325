"""Synaptic intelligence (Zenke, Poole & Ganguli 2017, "Continual Learning Through Synaptic Intelligence").

Each parameter's importance is the path integral of the loss decrease it caused during a task:

    ω_i  += −g_i · Δθ_i                      every optimizer step, g = gradient of the unregularised loss (Eq. 3)
    Ω_i  += ω_i / ((θ_i(end) − θ_i(start))² + ξ)     at the end of each task, then ω ← 0 (Eq. 5)
    penalty = c · Σ_i Ω_i (θ_i − θ*_i)²,     θ* = the parameters at the end of the last task (Eq. 4)

The trainer zeroes gradients inside the optimizer step, so g is captured by gradient hooks on the parameters,
registered in `before_task` and removed in `after_task`; they only read gradients. The captured gradient includes
this strategy's own penalty, whose gradient 2c·Ω(θ − θ*) is subtracted to get the unregularised g (another
strategy's penalty, e.g. EWC's, stays in). Under DDP the hooks see each process's local gradient; it is averaged
with `torch.distributed` as DDP does, so every process holds the same ω. Gradient scaling (fp16) would scale g;
the CLI refuses SI with fp16 mixed precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..objectives import LossOutput
from ..utils import bounds as b
from ..utils.errors import UserInputError
from ..utils.options import option, options_group
from .base import ContinualStrategy, TaskContext
from .context import StrategyConfig, StrategyContext
from .parameters import ParamDict, trainable_parameters


@options_group("SI", "synaptic intelligence")
@dataclass
class SIConfig(StrategyConfig):
    name = "si"

    si_lambda: float = option(1.0, bounds=b.NON_NEGATIVE, help="SI strength c in c·Σ Ω (θ − θ*)²")
    si_epsilon: float = option(0.1, bounds=b.POSITIVE, help="SI damping ξ > 0")

    def check(self, context: StrategyContext) -> None:
        if context.mixed_precision == "fp16":
            raise UserInputError(
                "SI reads gradients, which fp16 gradient scaling distorts: use --mixed_precision bf16"
            )

    def build(self, context: StrategyContext) -> SynapticIntelligence:
        return SynapticIntelligence(self.si_lambda, self.si_epsilon)


def _snapshot(params: dict[str, nn.Parameter]) -> ParamDict:
    return {n: p.detach().float().clone() for n, p in params.items()}


class SynapticIntelligence(ContinualStrategy):
    """SI (Zenke et al. 2017).

    Args:
        lambda_: penalty strength c.
        epsilon: damping ξ > 0 of the importance normaliser (θ(end) − θ(start))² + ξ.
    """

    name = "si"
    config = SIConfig
    penalty_reads_output = False  # the penalty reads the parameters only: batches may run in passes

    def __init__(self, lambda_: float, epsilon: float = 0.1):
        b.NON_NEGATIVE.check("lambda_", lambda_)  # the bounds of the flags (SIConfig)
        b.POSITIVE.check("epsilon", epsilon)
        self.lambda_, self.epsilon = lambda_, epsilon
        self.omega: ParamDict = {}  # ω: running path integral of the current task
        self.importance: ParamDict = {}  # Ω: consolidated importance of past tasks
        self.anchor: ParamDict = {}  # θ*: parameters at the end of the last task
        self.start: ParamDict = {}  # θ at the start of the current task
        self.start_task: int | None = None  # the task `start` and `omega` belong to
        self._previous: ParamDict = {}  # θ before the current optimizer step
        self._grads: ParamDict = {}  # Σ of hooked gradients since the last optimizer step
        self._hooks: list = []

    # ------------------------------------------------------------------------------------------ lifecycle
    def before_task(self, model: nn.Module, task_id: int, apply_ema=None) -> None:
        """Start (or, after a resume, continue) the task's path integral and hook the parameter gradients."""
        params = trainable_parameters(model)
        if self.start_task != task_id:
            self.start, self.start_task = _snapshot(params), task_id
            self.omega = {n: torch.zeros_like(s) for n, s in self.start.items()}
        self._previous, self._grads = _snapshot(params), {}
        self._remove_hooks()
        self._hooks = [p.register_hook(self._make_hook(n)) for n, p in params.items()]

    def _make_hook(self, name: str):
        def hook(grad: torch.Tensor) -> None:
            held = self._grads.get(name)
            self._grads[name] = grad.detach().float() if held is None else held + grad.detach().float()

        return hook

    def after_optimizer_step(self, model: nn.Module) -> None:
        """ω += −g·Δθ for the step just taken (Zenke et al. 2017, Eq. 3)."""
        params = trainable_parameters(model)
        grads = self._unregularised_grads(params)
        for n, p in params.items():
            current = p.detach().float()
            g = grads.get(n)
            if g is not None and torch.isfinite(g).all():
                self.omega[n] = self.omega[n].to(current.device) - g * (current - self._previous[n])
            self._previous[n] = current.clone()
        self._grads = {}

    def discard_step(self, model: nn.Module) -> None:
        """A skipped step moved no parameter: its hooked gradients must not leak into the next step's ω."""
        self._grads = {}

    def _unregularised_grads(self, params: dict[str, nn.Parameter]) -> ParamDict:
        grads = self._grads
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # Hooks saw local gradients; DDP stepped with their mean. Reduce every parameter in one fixed order
            # (zeros where a process saw none), so all processes issue the same collectives.
            grads = {n: grads.get(n, torch.zeros_like(p, dtype=torch.float32)) for n, p in params.items()}
            for g in grads.values():
                dist.all_reduce(g)
                g /= dist.get_world_size()
        if self.importance:
            for n, g in grads.items():  # remove our own penalty's gradient 2c·Ω(θ − θ*), taken at θ before the step
                grads[n] = g - 2.0 * self.lambda_ * self._on(self.importance, n, g) * (
                    self._previous[n] - self._on(self.anchor, n, g)
                )
        return grads

    def after_task(self, model: nn.Module, context: TaskContext) -> None:
        """Ω += ω / (Δθ² + ξ) (Eq. 5); θ* ← θ; unhook."""
        self._remove_hooks()
        self._grads = {}  # drop gradients hooked after the last step (e.g. another strategy's Fisher estimate)
        end = _snapshot(trainable_parameters(model))
        for n, theta in end.items():
            gain = self.omega[n].to(theta.device) / ((theta - self.start[n].to(theta.device)).pow(2) + self.epsilon)
            self.importance[n] = self._on(self.importance, n, theta) + gain if n in self.importance else gain
        self.anchor, self.start, self.start_task, self.omega = end, {}, None, {}

    def penalty(self, model: nn.Module, out: LossOutput) -> torch.Tensor | None:
        """c·Σ_i Ω_i (θ_i − θ*_i)² (0-d); None before the first task ends."""
        if not self.importance:
            return None
        params = trainable_parameters(model)
        total = torch.zeros((), device=next(iter(params.values())).device)
        for n, p in params.items():
            total = total + (self._on(self.importance, n, p) * (p - self._on(self.anchor, n, p)).pow(2)).sum()
        return self.lambda_ * total

    @staticmethod
    def _on(values: ParamDict, name: str, like: torch.Tensor) -> torch.Tensor:
        """values[name] on `like`'s device (restored state arrives on the CPU; moved once)."""
        if values[name].device != like.device:
            values[name] = values[name].to(like.device)
        return values[name]

    def _remove_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    # ------------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """{"start_task": int | None, "omega.<n>", "importance.<n>", "anchor.<n>", "start.<n>"} (float32)."""
        state: dict = {"start_task": self.start_task}
        for prefix, values in (
            ("omega", self.omega),
            ("importance", self.importance),
            ("anchor", self.anchor),
            ("start", self.start),
        ):
            state.update({f"{prefix}.{n}": v for n, v in values.items()})
        return state

    def load_state_dict(self, state: dict) -> None:
        if "start_task" not in state:
            raise UserInputError(
                "the checkpoint holds no SI state; resume with the strategy flags the run was started with"
            )
        self.start_task = state["start_task"]
        for prefix in ("omega", "importance", "anchor", "start"):
            setattr(self, prefix, {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")})
