"""Ancestral sampling over any diffusers scheduler, with classifier-free guidance.

The loop is diffusers' own recipe (DDPMPipeline.__call__): draw x_T, then for each t predict and step. Guidance
follows Ho & Salimans (2022): ε̃ = ε_∅ + w (ε_c − ε_∅); w = 1 is plain conditional sampling, w = 0 unconditional.
Energy models run through the same loop (their forward returns ε̂ = ∇ₓE).
"""

from __future__ import annotations

from typing import Literal

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler
from tqdm.auto import tqdm

SchedulerName = Literal["ddpm", "ddim", "dpm++", "euler_a"]
SCHEDULERS = {
    "ddpm": DDPMScheduler,
    "ddim": DDIMScheduler,
    "dpm++": DPMSolverMultistepScheduler,
    "euler_a": EulerAncestralDiscreteScheduler,
}


def make_sampling_scheduler(name: SchedulerName, train_scheduler_config) -> object:
    """A fresh sampling scheduler of kind `name` sharing the training noise schedule."""
    return SCHEDULERS[name].from_config(train_scheduler_config)


def guided_prediction(model, x: torch.Tensor, t: torch.Tensor, cond: dict, null_cond: dict | None, scale: float):
    """ε̃ = ε_∅ + w(ε_c − ε_∅), batching the conditional and null halves in one call. x: (B, C, H, W)."""
    if null_cond is None or scale == 1.0:
        return model(x, t, **cond).prediction
    if scale == 0.0:
        return model(x, t, **null_cond).prediction
    both = {k: torch.cat([cond[k], null_cond[k]]) for k in cond}
    pred = model(torch.cat([x, x]), torch.cat([t, t]), **both).prediction
    pred_c, pred_u = pred.chunk(2)
    return pred_u + scale * (pred_c - pred_u)


@torch.no_grad()
def sample_ancestral(
    model,
    scheduler,
    shape: tuple[int, ...],
    cond: dict,
    null_cond: dict | None = None,
    guidance_scale: float = 1.0,
    num_inference_steps: int = 50,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> torch.Tensor:
    """Draw samples x₀ of `shape` (B, C, H, W) in [-1, 1] from `model` (a `ScoreModel` / `EnergyModel`)."""
    if guidance_scale < 0:
        raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale}")
    scheduler.set_timesteps(num_inference_steps, device=device)
    x = torch.randn(shape, generator=generator, device=device) * scheduler.init_noise_sigma
    for t in tqdm(scheduler.timesteps, desc="sampling", leave=False, disable=not progress):
        # 1. predict the noise (guided) at level t
        t_batch = torch.full((shape[0],), int(t), device=device, dtype=torch.long)
        pred = guided_prediction(model, scheduler.scale_model_input(x, t), t_batch, cond, null_cond, guidance_scale)
        # 2. x_t -> x_{t-1}
        x = scheduler.step(pred, t, x, generator=generator).prev_sample
    return x.clamp(-1, 1)
