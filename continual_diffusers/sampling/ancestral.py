"""Ancestral sampling over any diffusers scheduler, optionally interleaved with MCMC at each noise level.

The loop is diffusers' own recipe (DDPMPipeline.__call__): draw x_T, then for each t predict ε̂ and step. The model
is any denoise function `denoise_fn(x (B, C, H, W), t (B,)) -> DenoiserOutput` with its conditions bound (see
`composition.compose`: classifier-free guidance, Ho & Salimans 2022, is composition with one concept). Energy
models run through the same loop: their forward returns ε̂ = ∇ₓE.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from tqdm.auto import tqdm

from ..utils.errors import UserInputError
from .composition import DenoiseFn

SchedulerName = str  # one of SCHEDULERS' keys
# name -> (diffusers scheduler class, config overrides). "ddpm" with fewer steps than T is strided ancestral
# sampling (DDIM with η = 1 up to the variance choice); the ODE solvers are deterministic given x_T.
# "_logsnr": steps uniform in log-SNR λ = log(√ᾱ/σ) (Lu et al. 2022, "time-uniform logSNR"), where the default
# steps, uniform in t, leave one step for the whole low-noise end (t = 40 → 0 at 25 steps: SNR 48 → 1e4), which
# under-disperses (benchmarks/bench_sampler_fidelity.py). "ddpm_large": DDPM with σ_t² = β_t (strided), the upper
# variance bound of Ho et al. 2020, instead of the posterior's β̃_t.
SCHEDULERS: dict[str, tuple[type, dict]] = {
    "ddpm": (DDPMScheduler, {}),
    "ddpm_large": (DDPMScheduler, {"variance_type": "fixed_large"}),
    "ddim": (DDIMScheduler, {}),
    "dpm++": (DPMSolverMultistepScheduler, {}),  # DPM-Solver++(2M), Lu et al. 2022
    "dpm++_karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
    "dpm++_logsnr": (DPMSolverMultistepScheduler, {"use_lu_lambdas": True}),
    "dpm++_sde": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++"}),  # stochastic 2M
    "dpm++_sde_logsnr": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "use_lu_lambdas": True}),
    "unipc": (UniPCMultistepScheduler, {}),  # Zhao et al. 2023
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
}
# The default sampler of end-of-task samples, evaluation, evaluate.py and generative replay's teacher (which keeps
# its own 10 steps). The rule (docs/sampler_fidelity.md, benchmarks/bench_sampler_fidelity.py): the fewest steps
# whose std ratio is within 3 % of 1 in every analytic cell (exact denoisers; ε, v and zero-SNR v) and whose oracle
# accuracy on every trained model is within 2 points of DDPM-1000's. Stochastic DPM-Solver++(2M) with steps uniform
# in log-SNR at 50 steps is the one measured to meet both: worst |std ratio − 1| 0.011, where strided DDPM-25 (the
# former default) draws 0.69 of a narrow Gaussian's std; the ODE solver that meets the std target with fewer steps
# (dpm++_logsnr: 0.017 at 25) scores 4 points below DDPM-1000 on an energy model (0.96 vs 1.00).
DEFAULT_SCHEDULER: SchedulerName = "dpm++_sde_logsnr"
DEFAULT_NUM_INFERENCE_STEPS = 50
# Solvers whose x₀ bound is diffusers' dynamic thresholding (DDPM/DDIM clip x₀ themselves; Euler has neither).
_THRESHOLDING = (DPMSolverMultistepScheduler, UniPCMultistepScheduler)
# Linear multistep solvers: each step extrapolates from the model outputs of earlier steps, so it assumes x was not
# moved between steps; a level hook (annealed MCMC) moves it, which leaves that history describing other points.
MULTISTEP = (DPMSolverMultistepScheduler, UniPCMultistepScheduler)
# (x at noise level t in variance-preserving coordinates (B, C, H, W), training timestep t) -> new x
LevelHook = Callable[[torch.Tensor, int], torch.Tensor]


def takes_eta(scheduler) -> bool:
    """Whether `scheduler` (a diffusers scheduler or its class) has DDIM's η: its `step` takes `eta`."""
    return "eta" in inspect.signature(scheduler.step).parameters


def check_eta(eta: float, scheduler, flag: str = "η (eta)") -> None:
    """η ≠ 0 needs a scheduler with DDIM's η (Song et al. 2021, Eq. 16; of `SCHEDULERS`, "ddim"): the one check of
    this rule, behind --ddim_eta (`SamplingConfig`), `SamplerOptions` and `sample_ancestral`. `scheduler`: a
    `SCHEDULERS` name, or a scheduler."""
    by_name = isinstance(scheduler, str)
    if eta and not takes_eta(SCHEDULERS[scheduler][0] if by_name else scheduler):
        name = scheduler if by_name else type(scheduler).__name__
        raise UserInputError(f"{flag} {eta:g} applies to --scheduler ddim, not {name}")


def make_sampling_scheduler(name: SchedulerName, train_scheduler_config) -> object:
    """A fresh sampling scheduler of kind `name` sharing the training noise schedule.

    DDPM/DDIM clip the predicted x₀ to ±clip_sample_range when the training config asks for it (pixel models);
    DPM-Solver++ and UniPC have no such option, so they get the equivalent bound through their x₀ thresholding
    (without it, the extrapolated x₀ of a not fully trained pixel model leaves the data range and quality drops
    sharply).

    A zero-terminal-SNR schedule (`rescale_betas_zero_snr`, ᾱ_T = 0) gets `timestep_spacing="trailing"`, so the
    first step is t = T − 1, where x_T ~ N(0, I) is exactly right (Lin et al. 2024, §3.3); the default "leading"
    spacing would start at T − T/n and never use the step the schedule was rescaled for."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)}")
    cls, extra = SCHEDULERS[name]
    extra = dict(extra)
    if train_scheduler_config.get("rescale_betas_zero_snr", False):
        extra["timestep_spacing"] = "trailing"
    if cls in _THRESHOLDING and train_scheduler_config.get("clip_sample", False):
        extra.update(thresholding=True, sample_max_value=train_scheduler_config.get("clip_sample_range", 1.0))
    return cls.from_config(train_scheduler_config, **extra)


def _at_level(hook: LevelHook, scheduler, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Run `hook` on x in variance-preserving coordinates x_t = √ᾱ_t x₀ + σ_t ε. DDPM/DDIM/DPM-Solver already use
    them; Euler schedulers keep x/√ᾱ_t, which their `scale_model_input` maps back, so we scale there and back."""
    scale = scheduler.scale_model_input(torch.ones((), device=x.device, dtype=x.dtype), t)
    return hook(x * scale, int(t)) / scale


@torch.no_grad()
def sample_ancestral(
    denoise_fn: DenoiseFn,
    scheduler,
    shape: tuple[int, ...],
    num_inference_steps: int = 50,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    level_hook: LevelHook | None = None,
    clamp: bool = True,
    progress: bool = False,
    eta: float = 0.0,
    progress_delay: float = 0.0,
) -> torch.Tensor:
    """Draw x₀ of `shape` (B, C, H, W) by ancestral sampling with `scheduler` (a diffusers scheduler).

    Args:
        denoise_fn: (x, t) -> DenoiserOutput; its `prediction` is in the scheduler's prediction type.
        level_hook: called at every timestep t *before* the prediction, on the sample at its own noise level t
            (e.g. `annealed.AnnealedMCMC`). It is never called at levels the sample does not visit.
        clamp: clamp the result to [-1, 1] (images); analytic tests turn it off.
        eta: DDIM's η (Song et al. 2021, Eq. 16): σ_t = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev); 0 is the
            deterministic DDIM, 1 the ancestral DDPM variance. Only for schedulers whose `step` takes `eta`.
        progress: a per-timestep bar on stderr (leave=False: it disappears when the loop ends or raises);
            `progress_delay`: seconds before it shows (`generate` waits, so only long samplers show it).
    Returns:
        (B, C, H, W) samples.
    """
    scheduler.set_timesteps(num_inference_steps, device=device)
    if hasattr(scheduler, "set_begin_index"):
        # The loop starts at the first step. Without this, multistep schedulers find their first step by looking
        # its timestep up, and take the second match when the rounding of σ to t repeats it (Karras σ on a
        # zero-terminal-SNR schedule at 50 steps: t = 995, 995, …), so they ran one step short and then failed.
        scheduler.set_begin_index(0)
    # Stochastic steps draw from our generator; deterministic solvers (UniPC) take none.
    step_params = inspect.signature(scheduler.step).parameters
    step_kwargs = {"generator": generator} if "generator" in step_params else {}
    if eta:
        check_eta(eta, scheduler)
        step_kwargs["eta"] = eta
    x = torch.randn(shape, generator=generator, device=device) * scheduler.init_noise_sigma
    bar = tqdm(
        scheduler.timesteps, desc="timesteps", unit="step", leave=False, disable=not progress, delay=progress_delay
    )
    with bar:
        for t in bar:
            # 1. optional MCMC on p_t, the distribution x currently targets
            if level_hook is not None:
                x = _at_level(level_hook, scheduler, x, t)
            # 2. predict the noise at level t
            t_batch = torch.full((shape[0],), int(t), device=device, dtype=torch.long)
            pred = denoise_fn(scheduler.scale_model_input(x, t), t_batch).prediction
            # 3. x_t -> x_{t_prev}
            x = scheduler.step(pred, t, x, **step_kwargs).prev_sample
    return x.clamp(-1, 1) if clamp else x
