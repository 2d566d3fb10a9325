"""Denoisers: the two ways we turn a UNet f_θ(x, t, c) into an ε-prediction.

- `ScoreModel`: ε̂ = f_θ(x, t, c) (or x₀ / v, per the scheduler's prediction type).
- `EnergyModel`: a scalar energy E_θ(x, t, c) per sample and ε̂ = ∇ₓE_θ (Du et al. 2023, "Reduce, Reuse,
  Recycle", §3; Salimans & Ho 2021). Two parameterisations (`energy_type`):
    * "l2":  E = ½‖f_θ(x, t, c)‖²        → ε̂ = J_fᵀ f
    * "dae": E = ½‖x − f_θ(x, t, c)‖²    → ε̂ = (I − J_f)ᵀ (x − f)

Sign convention, stated once for the whole library: E is an energy, log p̃_t(x) = −E(x, t)/σ_t and the score is
∇ₓ log p̃_t(x) = −ε̂(x, t)/σ_t with σ_t = √(1 − ᾱ_t).

Both return `DenoiserOutput(prediction, energy, auxiliary_loss)` from `forward`, so the training loop, DDP and the
samplers use one call signature: `denoiser(x, t, **cond)`; the conditioning kwargs are those of the wrapped
diffusers UNet (`class_labels=` or `encoder_hidden_states=`). `auxiliary_loss` (B,) is a model's own extra training
loss (slot models' decoder loss), which the objective adds to the denoising loss; it travels in the output, not in
module state, so a forward has no side effect and DDP / mixed-precision wrappers carry it like the prediction.

Slot-conditioned models (`models/slots.py`) carry their `SlotEncoder` as a second submodule next to the UNet, so
its parameters are part of the denoiser: the optimizer, DDP, EWC/SI, EMA, checkpoints and teacher copies include
them with no special case. Their condition may also be `slot_images=` (B, C, H, W) [+ `slot_keep=` (B,)], which
the denoiser encodes into slots inside its forward (see `slots.slot_unet_kwargs`).
"""

from __future__ import annotations

import contextlib
from typing import Literal, NamedTuple

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .slots import SlotEncoder, slot_unet_kwargs

EnergyType = Literal["l2", "dae"]


class DenoiserOutput(NamedTuple):
    prediction: torch.Tensor  # (B, C, H, W)
    energy: torch.Tensor | None  # (B,) for energy models, else None
    auxiliary_loss: torch.Tensor | None = None  # (B,), weighted, added to the training loss; None: none


class _Denoiser(nn.Module):
    """The UNet and, for slot-conditioned models, the slot encoder that turns images into its condition."""

    def __init__(self, unet: nn.Module, slot_encoder: SlotEncoder | None = None):
        super().__init__()
        self.unet = unet
        self.slot_encoder = slot_encoder

    def unet_kwargs(self, cond: dict, batch_size: int) -> tuple[dict, torch.Tensor | None]:
        """The UNet's conditioning kwargs (`cond` itself, or for slot models the slots it describes) and the
        auxiliary loss (B,) their computation produced: slot models with a decoder, λ·‖x₀ − x̂₀(slots)‖² in a
        training forward; None otherwise."""
        if self.slot_encoder is None:
            return cond, None
        return slot_unet_kwargs(self.slot_encoder, cond, batch_size)


class ScoreModel(_Denoiser):
    """The UNet output is the prediction (ε, x₀ or v)."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, **cond) -> DenoiserOutput:
        kwargs, auxiliary_loss = self.unet_kwargs(cond, x.shape[0])
        return DenoiserOutput(self.unet(x, t, **kwargs).sample, None, auxiliary_loss)


class EnergyModel(_Denoiser):
    """Energy parameterisation of any ε-UNet; ε̂ = ∇ₓE by autograd.

    In training mode with grad enabled the input gradient is built with `create_graph=True`, so a loss on ε̂
    back-propagates into θ (double backward). The forward then runs under the math attention kernel, because the
    fused SDPA kernels have no double backward. The caller's `x` is never modified: we differentiate a detached
    copy. In eval mode (sampling) the returned ε̂ and E are detached.
    """

    def __init__(self, unet: nn.Module, energy_type: EnergyType, slot_encoder: SlotEncoder | None = None):
        super().__init__(unet, slot_encoder)
        if energy_type not in ("l2", "dae"):
            raise ValueError(f"energy_type must be 'l2' or 'dae', got {energy_type!r}")
        self.energy_type = energy_type

    def energy(self, x: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        """E_θ(x, t, c) per sample, shape (B,)."""
        return self._energy(x, t, cond)[0]

    def _energy(self, x: torch.Tensor, t: torch.Tensor, cond: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """E (B,) and the auxiliary loss of computing the condition (`unet_kwargs`)."""
        kwargs, auxiliary_loss = self.unet_kwargs(cond, x.shape[0])
        f = self.unet(x, t, **kwargs).sample
        residual = f if self.energy_type == "l2" else x - f
        return 0.5 * residual.float().pow(2).flatten(1).sum(1), auxiliary_loss

    def forward(self, x: torch.Tensor, t: torch.Tensor, **cond) -> DenoiserOutput:
        create_graph = self.training and torch.is_grad_enabled()
        kernel = sdpa_kernel(SDPBackend.MATH) if create_graph else contextlib.nullcontext()
        with torch.enable_grad(), kernel:
            x_in = x.detach().requires_grad_(True)
            energy, auxiliary_loss = self._energy(x_in, t, cond)
            # Samples are independent (GroupNorm, no batch statistics), so ∇ of the batch sum is per-sample ∇E_b.
            (eps,) = torch.autograd.grad(energy.sum(), x_in, create_graph=create_graph)
        if not create_graph:
            eps, energy = eps.detach(), energy.detach()
        return DenoiserOutput(eps.to(x.dtype), energy, auxiliary_loss)

    def eps(self, x: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        """ε̂ = ∇ₓE, shape like x."""
        return self.forward(x, t, **cond).prediction


def make_denoiser(
    unet: nn.Module, energy_type: EnergyType | None, slot_encoder: SlotEncoder | None = None
) -> ScoreModel | EnergyModel:
    """`EnergyModel` when `energy_type` is given, else `ScoreModel`; `slot_encoder` for slot-conditioned models."""
    return EnergyModel(unet, energy_type, slot_encoder) if energy_type else ScoreModel(unet, slot_encoder)


SLOT_PREFIX = "slot_encoder."


def denoiser_state_dict(denoiser: nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint stores of the model: the UNet's state dict (keys unchanged, so checkpoints of models
    without a slot encoder are as before) plus the slot encoder's under `slot_encoder.`."""
    state = dict(denoiser.unet.state_dict())
    if getattr(denoiser, "slot_encoder", None) is not None:
        state.update({SLOT_PREFIX + k: v for k, v in denoiser.slot_encoder.state_dict().items()})
    return state


def load_denoiser_state_dict(denoiser: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Inverse of `denoiser_state_dict` (strict: a slot state for a model without a slot encoder is an error)."""
    slot = {k[len(SLOT_PREFIX) :]: v for k, v in state.items() if k.startswith(SLOT_PREFIX)}
    encoder = getattr(denoiser, "slot_encoder", None)
    if (encoder is None) != (not slot):
        have = "has" if encoder is not None else "has no"
        raise ValueError(f"the checkpoint and the model disagree on the slot encoder (the model {have} one)")
    denoiser.unet.load_state_dict({k: v for k, v in state.items() if not k.startswith(SLOT_PREFIX)})
    if encoder is not None:
        encoder.load_state_dict(slot)
