"""Annealed MCMC: MCMC kernels interleaved with the ancestral loop, targeting the diffused marginal p_t at the
noise level the sample is at (Du et al. 2023, "Reduce, Reuse, Recycle", Alg. 1 / App. B).

At every inference timestep t inside the window, *before* the ancestral step t → t_prev, the sample x_t is moved
by K kernel steps that leave p̃_t invariant (exactly for MALA/HMC, approximately for ULA/UHA), with

    ∇ₓ log p̃_t(x) = −ε̂(x, t)/σ_t,   log p̃_t(x) = −E(x, t)/σ_t,   σ_t = √(1 − ᾱ_t)      (models/denoiser.py)

and step sizes tied to the training schedule as in the reference: η_t = multiplier · β_t (ULA/MALA step, UHA/HMC
leapfrog step) and mass m_t = β_t. (With m_t = β_t the leapfrog position move is ≈ multiplier · ξ, independent of t.)
The reference ran MCMC after the step, on x_{t−1} with the target of level t (one noise level off); here the
target, step size and sample always share the same t.

Window: MCMC runs at the inference timesteps t (training-timestep units, 0 … T−1) with
`start_timestep ≤ t ≤ max_timestep`. `start_timestep` keeps the meaning of the reference's
`--mcmc_sampler_start_timestep` (MCMC while t ≥ value: the high-noise part from T−1 down to the value, so in loop
order it is where MCMC *stops*); `max_timestep=None` means no upper bound.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from ..utils import bounds as b
from ..utils.errors import UserInputError
from .composition import DenoiseFn
from .mcmc import KERNELS, NEEDS_LOG_PROB, KernelParams, Target
from .parameterisation import epsilon_from_prediction


@dataclass(frozen=True)
class MCMCOptions:
    """Annealed MCMC settings (flag names of evaluate.py in brackets)."""

    sampler: str  # "ULA" | "MALA" | "UHA" | "CHA"  [--mcmc_sampler]
    num_steps: int = 1  # K kernel steps per noise level  [--num_samples_per_step]
    step_size_multiplier: float = 0.1  # η_t = multiplier · β_t  [--step_sizes_multiplier]
    num_leapfrog_steps: int = 3  # L  [--num_leapfrog_steps]
    damping: float = 0.9  # γ  [--damping_coeff]
    start_timestep: float = 50  # MCMC at t ≥ start_timestep  [--mcmc_sampler_start_timestep]
    max_timestep: float | None = None  # … and t ≤ max_timestep  [--mcmc_sampler_max_timestep]

    def __post_init__(self):
        """Refuses (`UserInputError`, a ValueError) an unknown kernel and out-of-range or non-finite numbers: a NaN
        step size would turn every sample black."""
        if self.sampler not in KERNELS:
            raise UserInputError(f"unknown MCMC sampler {self.sampler!r}; choose one of {sorted(KERNELS)}")
        b.INNER_STEPS.check("num_steps", self.num_steps)
        b.INNER_STEPS.check("num_leapfrog_steps", self.num_leapfrog_steps)
        b.POSITIVE.check("step_size_multiplier", self.step_size_multiplier)
        b.UNIT.check("damping", self.damping)
        b.NON_NEGATIVE.check("start_timestep", self.start_timestep)
        if self.max_timestep is not None:
            b.NON_NEGATIVE.check("max_timestep", self.max_timestep)

    @property
    def needs_energy(self) -> bool:
        return self.sampler in NEEDS_LOG_PROB

    def active(self, t: int) -> bool:
        return t >= self.start_timestep and (self.max_timestep is None or t <= self.max_timestep)


def diffusion_target(
    denoise_fn: DenoiseFn, t: int, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon"
) -> Target:
    """The MCMC target of level t: x (B, ...) -> (log p̃_t = −E/σ_t (B,) or None for score models, −ε̂/σ_t)."""
    alpha_bar = alphas_cumprod[t]
    sigma = float((1 - alpha_bar).sqrt())

    def target(x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        out = denoise_fn(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long))
        eps = epsilon_from_prediction(out.prediction, x, alpha_bar.to(x.device, x.dtype), prediction_type)
        return (None if out.energy is None else -out.energy / sigma), -eps / sigma

    return target


class AnnealedMCMC:
    """The level hook `sample_ancestral` calls at each timestep; records acceptance per timestep.

    Args:
        denoise_fn: (x, t) -> DenoiserOutput (guided / composed), energies required for MALA/CHA.
        config: the kernel and its schedule.
        scheduler: any diffusers scheduler built from the training config (for β_t and ᾱ_t, length T).
        generator: the source of every MCMC random number.
    """

    def __init__(
        self,
        denoise_fn: DenoiseFn,
        config: MCMCOptions,
        scheduler,
        generator: torch.Generator | None,
        prediction_type: str = "epsilon",
    ):
        self.denoise_fn, self.config, self.generator = denoise_fn, config, generator
        self.betas = scheduler.betas.double().cpu()
        self.alphas_cumprod = scheduler.alphas_cumprod.float().cpu()
        self.prediction_type = prediction_type
        self.acceptance_sum: dict[int, float] = defaultdict(float)  # Σ over chains of per-chain acceptance
        self.num_chains: dict[int, int] = defaultdict(int)
        self.num_grad_evals = 0

    def params_at(self, t: int) -> KernelParams:
        """Step size η_t = multiplier · β_t and mass m_t = β_t."""
        beta = float(self.betas[t])
        c = self.config
        return KernelParams(c.step_size_multiplier * beta, c.num_steps, c.num_leapfrog_steps, c.damping, beta)

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        if not self.config.active(t):
            return x
        target = diffusion_target(self.denoise_fn, t, self.alphas_cumprod, self.prediction_type)
        result = KERNELS[self.config.sampler](target, x, self.params_at(t), self.generator)
        self.acceptance_sum[t] += float(result.acceptance.sum())
        self.num_chains[t] += x.shape[0]
        self.num_grad_evals += result.num_grad_evals
        return result.x

    def acceptance_rates(self) -> dict[int, float]:
        """Mean acceptance over chains and inner steps, per timestep, high noise first."""
        return {t: self.acceptance_sum[t] / self.num_chains[t] for t in sorted(self.num_chains, reverse=True)}
