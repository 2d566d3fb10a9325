"""The denoising objective (Ho et al. 2020, Eq. 14) with ε / x₀ / v targets and optional min-SNR-γ weighting
(Hang et al. 2023). Score and energy models share it: an energy model is a parameterisation of ε̂ (see
`models/denoiser.py`), not a different loss, so `--energy_based_training` changes the model, not this file.

Per-sample, unreduced losses are returned so replay and strategies can reweight before reducing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from diffusers import DDPMScheduler

PredictionType = Literal["epsilon", "sample", "v_prediction"]


def default_prediction_type(energy_based: bool) -> PredictionType:
    """The prediction type a model gets when none is asked for: ε for energy models (ε̂ = ∇ₓE is the only
    prediction an energy defines), v = √ᾱ ε − √(1−ᾱ) x₀ (Salimans & Ho 2022) for score models.

    v is the default for score models because it learns each task faster at a fixed budget (CHANGELOG.md, "Recipe and
    samplers": task 1 alone after 300 steps, oracle accuracy 1.00 vs 0.95 on the 8×8 digits and 0.99 vs 0.84 at
    16×16) and, unlike ε, stays defined at ᾱ_T = 0 (zero terminal SNR)."""
    return "epsilon" if energy_based else "v_prediction"


TimestepSampling = Literal["uniform", "stratified", "logit_normal"]
TIMESTEP_SAMPLINGS: tuple[str, ...] = ("uniform", "stratified", "logit_normal")


def sample_timesteps(
    kind: TimestepSampling, batch_size: int, num_steps: int, generator: torch.Generator | None, device
) -> torch.Tensor:
    """Training timesteps t ∈ {0, …, T−1}, shape (B,).

    - `uniform`: t ~ U{0, …, T−1} independently (Ho et al. 2020, Algorithm 1).
    - `stratified`: one shared u ~ U[0, 1) and t_i = ⌊T·((u + i/B) mod 1)⌋, so the batch covers [0, T) evenly
      (the low-discrepancy sampler of Kingma et al. 2021, VDM, Appendix I.2). Each t_i is still marginally
      U{0, …, T−1}, so the loss is the same in expectation with a lower variance across batches.
    - `logit_normal`: t = ⌊T·sigmoid(n)⌋ with n ~ N(0, 1) (Esser et al. 2024, SD3 §3.1): more weight on the middle
      noise levels, less on the nearly clean and the nearly pure-noise ends. This changes the objective's
      weighting over t, not only its variance.
    """
    if kind == "uniform":
        return torch.randint(0, num_steps, (batch_size,), generator=generator, device=device)
    if kind == "stratified":
        u = torch.rand((), generator=generator, device=device, dtype=torch.float32)
        offsets = torch.arange(batch_size, device=device, dtype=torch.float32) / batch_size
        return ((u + offsets) % 1.0 * num_steps).floor().long().clamp(max=num_steps - 1)
    if kind == "logit_normal":
        n = torch.randn((batch_size,), generator=generator, device=device, dtype=torch.float32)
        return (torch.sigmoid(n) * num_steps).floor().long().clamp(max=num_steps - 1)
    raise ValueError(f"unknown timestep sampling {kind!r}; choose one of {TIMESTEP_SAMPLINGS}")


@dataclass
class LossOutput:
    loss: torch.Tensor  # (B,) weighted per-sample loss
    x_t: torch.Tensor  # (B, C, H, W) noisy input
    t: torch.Tensor  # (B,) integer timesteps
    noise: torch.Tensor  # (B, C, H, W) the ε that produced x_t
    prediction: torch.Tensor  # (B, C, H, W) model output (ε̂, x̂₀ or v̂)
    energy: torch.Tensor | None = None  # (B,) for energy models
    condition: dict = field(default_factory=dict)  # the UNet kwargs the prediction was made with (per-row tensors)
    num_replay: int = 0  # the last num_replay rows are replayed samples (set by the trainer)
    weight: torch.Tensor | None = None  # (B,) the objective's w(t) per row (regularisers weight their terms alike)


class DenoisingObjective:
    """`objective(model, x0, cond, generator) -> LossOutput`, i.e. `loss(model, x0, *draw(x0, generator), cond)`:
    ε ~ N(0, I) and t ~ `timestep_sampling` (`draw`), then x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε and the weighted squared
    error of the model's prediction at (x_t, t) against the target (`loss`).

    Args:
        scheduler: the training noise schedule (only `add_noise`, `get_velocity`, `alphas_cumprod` are used).
        prediction_type: what the model predicts; the target follows.
        noise_offset: ε ← ε + offset·ξ with ξ ~ N(0, 1) per sample and channel (0 disables).
        snr_gamma: min-SNR-γ weight w(t) = min(SNR_t, γ)/SNR_t for ε, min(SNR_t, γ)/(SNR_t + 1) for v, and
            min(SNR_t, γ) for x₀. `None` means the unweighted loss for ε and v; for x₀ we keep the reference's
            SNR weighting ᾱ/(1−ᾱ), which makes the x₀ loss equal to the ε loss in expectation.
        timestep_sampling: how t is drawn per batch (`sample_timesteps`).
    """

    def __init__(
        self,
        scheduler: DDPMScheduler,
        prediction_type: PredictionType,
        snr_gamma: float | None = None,
        noise_offset: float = 0.0,
        timestep_sampling: TimestepSampling = "uniform",
    ):
        if timestep_sampling not in TIMESTEP_SAMPLINGS:
            raise ValueError(f"unknown timestep sampling {timestep_sampling!r}; choose one of {TIMESTEP_SAMPLINGS}")
        if prediction_type == "epsilon" and float(scheduler.alphas_cumprod[-1]) == 0.0:
            raise ValueError(
                "a zero-terminal-SNR schedule (ᾱ_T = 0) cannot train ε-prediction: x₀ = (x_T − σ_T ε̂)/√ᾱ_T is 0/0 at "
                "the last step (Lin et al. 2024); use v_prediction or sample"
            )
        self.timestep_sampling = timestep_sampling
        self.scheduler = scheduler
        self.noise_offset = noise_offset
        self.prediction_type = prediction_type
        self.snr_gamma = snr_gamma
        alphas_cumprod = scheduler.alphas_cumprod.float()
        self._snr = alphas_cumprod / (1.0 - alphas_cumprod)  # (T,)

    def __call__(self, model, x0: torch.Tensor, cond: dict, generator: torch.Generator | None = None) -> LossOutput:
        noise, t = self.draw(x0, generator)
        return self.loss(model, x0, noise, t, cond)

    def draw(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The random part of the loss for a batch x0 (B, C, H, W): ε ~ N(0, I) (+ the offset noise) like x0, and
        t (B,) (`timestep_sampling`). Drawn for the whole batch, so `loss` on any split of its rows computes the
        same per-sample losses as on the whole batch."""
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        if self.noise_offset:
            # Offset noise (Guttenberg 2023): a per-channel constant shift lets the model learn overall brightness.
            shift = torch.randn((*x0.shape[:2], 1, 1), generator=generator, device=x0.device, dtype=x0.dtype)
            noise = noise + self.noise_offset * shift
        num_steps = self.scheduler.config.num_train_timesteps
        t = sample_timesteps(self.timestep_sampling, x0.shape[0], num_steps, generator, x0.device)
        return noise, t

    def loss(self, model, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, cond: dict) -> LossOutput:
        """Per-sample losses (B,) of `model` on x0 (B, C, H, W) noised with `noise` (like x0) at timesteps t (B,);
        `cond`: the UNet's conditioning kwargs, per-row tensors."""
        # 1. Form x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε.
        x_t = self.scheduler.add_noise(x0, noise, t)
        # 2. Predict and regress onto the target.
        out = model(x_t, t, **cond)
        target = self.target(x0, noise, t)
        weight = self.weights(t)
        per_sample = (out.prediction.float() - target.float()).pow(2).flatten(1).mean(1) * weight
        auxiliary = getattr(out, "auxiliary_loss", None)  # a model's own extra loss (slot decoders); plain pairs: none
        if auxiliary is not None:
            per_sample = per_sample + auxiliary
        return LossOutput(per_sample, x_t, t, noise, out.prediction, out.energy, dict(cond), weight=weight)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The regression target for `prediction_type`: ε, x₀ or v = √ᾱ_t ε − √(1−ᾱ_t) x₀; shapes like x0."""
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "sample":
            return x0
        return self.scheduler.get_velocity(x0, noise, t)

    def weights(self, t: torch.Tensor) -> torch.Tensor:
        """Per-sample loss weight w(t), shape (B,)."""
        snr = self._snr.to(t.device)[t]
        if self.snr_gamma is None:
            return snr if self.prediction_type == "sample" else torch.ones_like(snr)
        if self.prediction_type == "epsilon":
            # min(SNR, γ)/SNR written as min(1, γ/SNR): equal for SNR > 0 and its limit 1 at a zero-terminal-SNR
            # step (SNR_T = 0, e.g. `rescale_betas_zero_snr`), where the quotient form is 0/0 = NaN.
            return (self.snr_gamma / snr).clamp(max=1.0)
        clipped = snr.clamp(max=self.snr_gamma)
        if self.prediction_type == "v_prediction":
            return clipped / (snr + 1.0)
        return clipped
