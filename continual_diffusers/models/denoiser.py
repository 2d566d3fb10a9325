"""Denoisers: the two ways we turn a UNet f_θ(x, t, c) into an ε-prediction.

- `ScoreModel`: ε̂ = f_θ(x, t, c) (or x₀ / v, per the scheduler's prediction type).
- `EnergyModel`: a scalar energy E_θ(x, t, c) per sample and ε̂ = ∇ₓE_θ (Du et al. 2023, "Reduce, Reuse,
  Recycle", §3; Salimans & Ho 2021). Two parameterisations (`energy_type`):
    * "l2":  E = ½‖f_θ(x, t, c)‖²        → ε̂ = J_fᵀ f
    * "dae": E = ½‖x − f_θ(x, t, c)‖²    → ε̂ = (I − J_f)ᵀ (x − f)

Sign convention, stated once for the whole library: E is an energy, log p̃_t(x) = −E(x, t)/σ_t and the score is
∇ₓ log p̃_t(x) = −ε̂(x, t)/σ_t with σ_t = √(1 − ᾱ_t).

Both return `DenoiserOutput(prediction, energy)` from `forward`, so the training loop, DDP and the samplers use one
call signature: `denoiser(x, t, **cond)`; the conditioning kwargs are those of the wrapped diffusers UNet
(`class_labels=` or `encoder_hidden_states=`).
"""

from __future__ import annotations

import contextlib
from typing import Literal, NamedTuple

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

EnergyType = Literal["l2", "dae"]


class DenoiserOutput(NamedTuple):
    prediction: torch.Tensor  # (B, C, H, W)
    energy: torch.Tensor | None  # (B,) for energy models, else None


class ScoreModel(nn.Module):
    """The UNet output is the prediction (ε, x₀ or v)."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor, **cond) -> DenoiserOutput:
        return DenoiserOutput(self.unet(x, t, **cond).sample, None)


class EnergyModel(nn.Module):
    """Energy parameterisation of any ε-UNet; ε̂ = ∇ₓE by autograd.

    In training mode with grad enabled the input gradient is built with `create_graph=True`, so a loss on ε̂
    back-propagates into θ (double backward). The forward then runs under the math attention kernel, because the
    fused SDPA kernels have no double backward. The caller's `x` is never modified: we differentiate a detached
    copy. In eval mode (sampling) the returned ε̂ and E are detached.
    """

    def __init__(self, unet: nn.Module, energy_type: EnergyType):
        super().__init__()
        if energy_type not in ("l2", "dae"):
            raise ValueError(f"energy_type must be 'l2' or 'dae', got {energy_type!r}")
        self.unet = unet
        self.energy_type = energy_type

    def energy(self, x: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        """E_θ(x, t, c) per sample, shape (B,)."""
        f = self.unet(x, t, **cond).sample
        residual = f if self.energy_type == "l2" else x - f
        return 0.5 * residual.float().pow(2).flatten(1).sum(1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, **cond) -> DenoiserOutput:
        create_graph = self.training and torch.is_grad_enabled()
        kernel = sdpa_kernel(SDPBackend.MATH) if create_graph else contextlib.nullcontext()
        with torch.enable_grad(), kernel:
            x_in = x.detach().requires_grad_(True)
            energy = self.energy(x_in, t, **cond)
            # Samples are independent (GroupNorm, no batch statistics), so ∇ of the batch sum is per-sample ∇E_b.
            (eps,) = torch.autograd.grad(energy.sum(), x_in, create_graph=create_graph)
        if not create_graph:
            eps, energy = eps.detach(), energy.detach()
        return DenoiserOutput(eps.to(x.dtype), energy)

    def eps(self, x: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        """ε̂ = ∇ₓE, shape like x."""
        return self.forward(x, t, **cond).prediction


def make_denoiser(unet: nn.Module, energy_type: EnergyType | None) -> ScoreModel | EnergyModel:
    """`EnergyModel` when `energy_type` is given, else `ScoreModel`."""
    return EnergyModel(unet, energy_type) if energy_type else ScoreModel(unet)
