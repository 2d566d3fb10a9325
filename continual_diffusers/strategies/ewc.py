"""Elastic weight consolidation for diffusion models (Kirkpatrick et al. 2017; online form: Schwarz et al. 2018).

After each task, the diagonal Fisher of the diffusion loss is estimated from per-sample gradients on the task's own
data (never replay), and the parameters θ* are stored. Later tasks add the quadratic penalty

    separate:  (λ/2) · Σ_k Σ_i F_k,i (θ_i − θ*_k,i)²        one term per past task k (Kirkpatrick et al. 2017, Eq. 3)
    online:    (λ/2) · Σ_i F̃_i (θ_i − θ*_i)²,  F̃ ← γ·F̃ + F_k,  θ* ← θ_k       (Schwarz et al. 2018, §2.2)

Fisher estimate (the earlier implementation squared a batch-mean gradient instead): for each of N samples x_n,
draw K (timestep, noise) pairs, take the gradient g_n of the sample's loss averaged over those K draws (a Monte-Carlo
estimate of its denoising ELBO, as Selective Amnesia does over all timesteps), and set F = (1/N)·Σ_n g_n². The
per-sample gradients come from `torch.func.vmap(grad(...))` (or, as a reference, a loop over single samples); the
loss is unscaled (no gradient accumulation divisor, no GradScaler) and computed in float32 outside autocast.
Energy models' ε̂ = ∇ₓE is itself a gradient, so the Fisher differentiates through it (double backward).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..models.denoiser import EnergyModel
from ..objectives import DenoisingObjective, LossOutput
from ..utils import bounds as b
from ..utils.errors import UserInputError
from ..utils.faults import fault_point
from ..utils.options import option, options_group
from ..utils.progress import progress_bar
from ..utils.seed import make_generator
from .base import ContinualStrategy, TaskContext
from .context import StrategyConfig, StrategyContext
from .parameters import ParamDict, trainable_parameters

EWCMode = Literal["separate", "online"]


@options_group("EWC", "elastic weight consolidation (per-sample diagonal Fisher)")
@dataclass
class EWCConfig(StrategyConfig):
    """EWC's options (`--ewc_loss`, the earlier implementation's switch, enables it like `--strategy ewc`)."""

    name = "ewc"
    enabled_by = "ewc_loss"

    ewc_loss: bool = option(False, help="enables EWC")
    lambda_ewc: float = option(
        1.0,
        bounds=b.NON_NEGATIVE,
        flags=("--lambda_ewc", "--ewc_lambda"),
        help="EWC strength λ in (λ/2)·Σ F (θ − θ*)²",
    )
    ewc_mode: str = option(
        "separate", choices=("separate", "online"),
        help="one penalty per past task, or one running Fisher decayed by --ewc_gamma",
    )  # fmt: skip
    ewc_gamma: float = option(1.0, bounds=b.DECAY, help="online EWC decay γ in (0, 1]")
    num_samples_ewc: int = option(
        100, bounds=b.EWC_SAMPLES, flags=("--num_samples_ewc", "--ewc_num_samples"), help="samples per Fisher estimate"
    )
    ewc_fisher_timesteps: int = option(4, bounds=b.INNER_STEPS, help="(timestep, noise) draws per Fisher sample")
    ewc_fisher_batch_size: int = option(
        8, bounds=b.BATCH_SIZE, help="samples per vectorised per-sample-gradient call (memory ∝ this × parameters)"
    )

    def build(self, context: StrategyContext) -> EWC:
        return EWC(
            self.lambda_ewc,
            self.ewc_mode,
            self.ewc_gamma,
            num_samples=self.num_samples_ewc,
            num_timesteps=self.ewc_fisher_timesteps,
            batch_size=self.ewc_fisher_batch_size,
        )


class _Prediction(nn.Module):
    """x_t, t, cond → the model's prediction, with ε̂ = ∇ₓE spelled out for energy models.

    `functional=True` builds ∇ₓE with `torch.func.grad` (usable under vmap); otherwise with
    `torch.autograd.grad(create_graph=True)`. Either way the result stays differentiable in θ.
    """

    def __init__(self, model: nn.Module, functional: bool):
        super().__init__()
        self.model = model
        self.functional = functional

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
        if not isinstance(self.model, EnergyModel):
            return self.model(x_t, t, **cond).prediction
        if self.functional:
            return grad(lambda x: self.model.energy(x, t, **cond).sum())(x_t)
        x = x_t.detach().requires_grad_(True)
        return torch.autograd.grad(self.model.energy(x, t, **cond).sum(), x, create_graph=True)[0]


def _sample_loss(predict: nn.Module, params: ParamDict, x_t, t, target, weight, cond) -> torch.Tensor:
    """One sample's loss averaged over its K draws: x_t (K, C, H, W), t (K,), target like x_t, weight (K,)."""
    prediction = functional_call(predict, params, (x_t, t, cond)) if params else predict(x_t, t, cond)
    return (weight * (prediction.float() - target.float()).pow(2).flatten(1).mean(1)).mean()


def per_sample_squared_grads(
    model: nn.Module,
    x_t: torch.Tensor,
    t: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    cond: dict,
    vectorize: bool = True,
) -> ParamDict:
    """Σ_n g_n² over a chunk of S samples, g_n = ∇θ of sample n's loss averaged over its K draws.

    Args:
        model: the unwrapped denoiser (`ScoreModel` or `EnergyModel`).
        x_t, target: (S, K, C, H, W). t, weight: (S, K). cond: UNet kwargs, each tensor (S, K, ...).
        vectorize: `vmap(grad)` over the S samples; False loops over them (the reference, same maths).

    Returns:
        name → Σ_n g_n², shaped like the parameter (float32).
    """
    params = trainable_parameters(model)
    if vectorize:
        return _vmap_squared_grads(model, params, (x_t, t, target, weight, cond))
    predict = _Prediction(model, functional=False)
    total = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    for s in range(x_t.shape[0]):
        loss = _sample_loss(predict, {}, x_t[s], t[s], target[s], weight[s], {k: v[s] for k, v in cond.items()})
        for n, g in zip(params, torch.autograd.grad(loss, list(params.values()), allow_unused=True)):
            if g is not None:
                total[n] += g.float().pow(2)
    return total


def _vmap_squared_grads(model: nn.Module, params: dict[str, nn.Parameter], samples: tuple) -> ParamDict:
    predict = _Prediction(model, functional=True)
    detached = {f"model.{n}": p.detach() for n, p in params.items()}  # names as seen from `predict`

    def loss_fn(p, *sample):
        return _sample_loss(predict, p, *sample)

    grads = vmap(grad(loss_fn), in_dims=(None, 0, 0, 0, 0, 0))(detached, *samples)  # each (S, *param.shape)
    return {n: grads[f"model.{n}"].float().pow(2).sum(0) for n in params}


def _draw_chunk(objective: DenoisingObjective, x0: torch.Tensor, num_timesteps: int, generator: torch.Generator):
    """Noisy inputs for S samples × K draws: x_t, target (S, K, C, H, W); t, weight (S, K). Drawn on the CPU."""
    s, k = x0.shape[0], num_timesteps
    noise = torch.randn((s * k, *x0.shape[1:]), generator=generator).to(x0.device, x0.dtype)
    t = torch.randint(0, objective.scheduler.config.num_train_timesteps, (s * k,), generator=generator).to(x0.device)
    x0_rep = x0.repeat_interleave(k, dim=0)
    x_t = objective.scheduler.add_noise(x0_rep, noise, t)
    target = objective.target(x0_rep, noise, t)  # the objective's own ε / x₀ / v target
    shape = (s, k, *x0.shape[1:])
    return x_t.view(shape), target.view(shape), t.view(s, k), objective.weights(t).view(s, k)


@torch.enable_grad()
def estimate_fisher(
    model: nn.Module,
    dataset,
    objective: DenoisingObjective,
    encode_condition: Callable[[dict, torch.device], dict],
    device: torch.device,
    generator: torch.Generator,
    num_samples: int = 100,
    num_timesteps: int = 4,
    batch_size: int = 8,
    vectorize: bool = True,
    progress: bool | None = None,
) -> ParamDict:
    """Diagonal empirical Fisher F = (1/N)·Σ_n g_n² of the diffusion loss (see the module docstring).

    Args:
        model: the unwrapped denoiser; put in eval mode for the estimate, its mode restored afterwards.
        dataset: `TaskDataset`-like (`len()`, `batch(indices, generator)`) of the task's own data.
        objective: the training objective (noise schedule, target, per-timestep weight w(t)).
        encode_condition: batch, device → UNet conditioning kwargs (no CFG dropout).
        device: where the model lives.
        generator: CPU generator for the sample subset, augmentation, t and ε (identical on every process).
        num_samples: N = min(num_samples, len(dataset)); the Fisher is divided by exactly this N.
        num_timesteps: K (timestep, noise) draws per sample.
        batch_size: samples per vmap call (memory ∝ batch_size × number of parameters).
        vectorize: vmap (default) or the single-sample loop.
        progress: a bar over the N samples on the main process (True), none (False), or once it runs a few
            seconds (None; see `sampling.generate.progress_bar`).

    Returns:
        name → F (float32, on `device`) for every trainable parameter.
    """
    num = min(num_samples, len(dataset))
    indices = torch.randperm(len(dataset), generator=generator)[:num]
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in trainable_parameters(model).items()}
    was_training = model.training
    model.eval()
    try:
        # Fused attention kernels have no double backward (energy models, vmap): use the math kernel.
        with (
            torch.autocast(device.type, enabled=False),
            sdpa_kernel(SDPBackend.MATH),
            progress_bar(desc="EWC Fisher", total=num, unit="sample", progress=progress) as bar,
        ):
            for chunk in indices.split(batch_size):
                batch = dataset.batch(chunk, generator=generator)
                x0 = batch["images"].to(device, torch.float32)
                x_t, target, t, weight = _draw_chunk(objective, x0, num_timesteps, generator)
                cond = {
                    k: v.repeat_interleave(num_timesteps, 0).view(len(chunk), num_timesteps, *v.shape[1:])
                    for k, v in encode_condition(batch, device).items()
                }
                for n, sq in per_sample_squared_grads(model, x_t, t, target, weight, cond, vectorize).items():
                    fisher[n] += sq
                bar.update(len(chunk))
                fault_point("ewc_fisher")
    finally:
        model.train(was_training)
    return {n: f / max(num, 1) for n, f in fisher.items()}


class EWC(ContinualStrategy):
    """Elastic weight consolidation with a per-sample diagonal Fisher of the diffusion loss.

    Args:
        lambda_: penalty strength λ in (λ/2)·Σ F (θ − θ*)².
        mode: `separate` (one term per past task) or `online` (one running Fisher, decayed by γ).
        gamma: online decay γ in (0, 1]; ignored in `separate` mode.
        num_samples: samples per Fisher estimate (capped by the task size).
        num_timesteps: (timestep, noise) draws per sample.
        batch_size: samples per vectorised gradient call.
        vectorize: per-sample gradients with vmap (True) or a loop (False).
    """

    name = "ewc"
    config = EWCConfig
    penalty_reads_output = False  # the penalty reads the parameters only: batches may run in passes

    def __init__(
        self,
        lambda_: float,
        mode: EWCMode = "separate",
        gamma: float = 1.0,
        num_samples: int = 100,
        num_timesteps: int = 4,
        batch_size: int = 8,
        vectorize: bool = True,
    ):
        if mode not in ("separate", "online"):
            raise ValueError(f"mode must be 'separate' or 'online', got {mode!r}")
        b.NON_NEGATIVE.check("lambda_", lambda_)  # the bounds of the flags (EWCConfig)
        b.DECAY.check("gamma", gamma)
        b.EWC_SAMPLES.check("num_samples", num_samples)
        b.INNER_STEPS.check("num_timesteps", num_timesteps)
        b.BATCH_SIZE.check("batch_size", batch_size)
        self.lambda_, self.mode, self.gamma = lambda_, mode, gamma
        self.fisher_options = dict(
            num_samples=num_samples, num_timesteps=num_timesteps, batch_size=batch_size, vectorize=vectorize
        )
        self.terms: dict[str, tuple[ParamDict, ParamDict]] = {}  # slot ("<task_id>" or "online") → (F, θ*)

    def after_task(self, model: nn.Module, context: TaskContext) -> None:
        """Estimate F on the task's own data and store it with θ* = the current parameters."""
        generator = make_generator(context.seed, "ewc_fisher", context.task_id)
        fisher = estimate_fisher(
            model,
            context.dataset,
            context.objective,
            context.encode_condition,
            context.device,
            generator,
            **self.fisher_options,
        )
        anchor = {n: p.detach().clone() for n, p in trainable_parameters(model).items()}
        if self.mode == "online":
            previous = self.terms.get("online")
            if previous is not None:
                fisher = {n: self.gamma * previous[0][n].to(f.device) + f for n, f in fisher.items()}
            self.terms["online"] = (fisher, anchor)
        else:
            self.terms[str(context.task_id)] = (fisher, anchor)

    def penalty(self, model: nn.Module, out: LossOutput) -> torch.Tensor | None:
        """(λ/2)·Σ_terms Σ_i F_i (θ_i − θ*_i)², a 0-d tensor differentiable in θ; None before the first task ends."""
        if not self.terms:
            return None
        params = trainable_parameters(model)
        total = torch.zeros((), device=next(iter(params.values())).device)
        for fisher, anchor in self.terms.values():
            for n, p in params.items():
                if fisher[n].device != p.device:  # restored state arrives on the CPU: move once
                    fisher[n], anchor[n] = fisher[n].to(p.device), anchor[n].to(p.device)
                total = total + (fisher[n] * (p - anchor[n]).pow(2)).sum()
        return 0.5 * self.lambda_ * total

    def state_dict(self) -> dict:
        """{"mode", "slots": [...], "fisher.<slot>.<name>", "anchor.<slot>.<name>"}."""
        state: dict = {"mode": self.mode, "slots": list(self.terms)}
        for slot, (fisher, anchor) in self.terms.items():
            state.update({f"fisher.{slot}.{n}": f for n, f in fisher.items()})
            state.update({f"anchor.{slot}.{n}": a for n, a in anchor.items()})
        return state

    def load_state_dict(self, state: dict) -> None:
        if state.get("mode") != self.mode or "slots" not in state:
            raise UserInputError(
                f"the checkpoint holds no EWC state for mode {self.mode!r} (found "
                f"{state.get('mode')!r}); resume with the strategy flags the run was started with"
            )
        self.terms = {}
        for slot in state["slots"]:
            fisher = {k[len(f"fisher.{slot}.") :]: v for k, v in state.items() if k.startswith(f"fisher.{slot}.")}
            anchor = {k[len(f"anchor.{slot}.") :]: v for k, v in state.items() if k.startswith(f"anchor.{slot}.")}
            self.terms[slot] = (fisher, anchor)
