"""Conversions between the three predictions a denoiser may make at a fixed noisy input.

With x_t = √ᾱ_t x₀ + σ_t ε, σ_t = √(1 − ᾱ_t), and v = √ᾱ_t ε − σ_t x₀ (Salimans & Ho 2022, §4), at fixed x_t:

    from x₀:  ε = (x_t − √ᾱ_t x₀)/σ_t          to x₀:  x₀ = (x_t − σ_t ε)/√ᾱ_t
    from v:   ε = σ_t x_t + √ᾱ_t v               to v:   v = (ε − σ_t x_t)/√ᾱ_t

Each map is affine in the prediction, so an affine combination Σ_k c_k f_k with Σ_k c_k = 1 (classifier-free
guidance, ε_∅ + Σ_k w_k(ε_k − ε_∅)) is the same in every parameterisation, while a weighted sum with Σ_k w_k ≠ 1
is not: Σ_k w_k v_k = v(Σ_k w_k ε_k) − (W − 1)·σ_t/√ᾱ_t·x_t with W = Σ_k w_k. The way back to x₀ or v divides by
√ᾱ_t, which is 0 at the last step of a zero-terminal-SNR schedule.
"""

from __future__ import annotations

import torch

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def _levels(alpha_bar: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(√ᾱ, σ) shaped to broadcast over x (B, ...); alpha_bar is 0-dim (one level) or (B,) (one per row)."""
    alpha_bar = alpha_bar.to(x.device, x.dtype)
    if alpha_bar.dim() == 1:
        alpha_bar = alpha_bar.view(-1, *([1] * (x.dim() - 1)))
    return alpha_bar.sqrt(), (1 - alpha_bar).sqrt()


def _check(prediction_type: str) -> None:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction_type {prediction_type!r}; choose one of {PREDICTION_TYPES}")


def epsilon_from_prediction(pred: torch.Tensor, x: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str):
    """ε̂ from an ε / x₀ ("sample") / v prediction `pred` (B, ...) of x_t = `x` at level ᾱ (0-dim or (B,))."""
    _check(prediction_type)
    if prediction_type == "epsilon":
        return pred
    root, sigma = _levels(alpha_bar, x)
    if prediction_type == "sample":
        return (x - root * pred) / sigma
    return root * pred + sigma * x


def prediction_from_epsilon(eps: torch.Tensor, x: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str):
    """The ε / x₀ / v prediction that corresponds to ε̂ = `eps` (B, ...) at x_t = `x`, level ᾱ (0-dim or (B,)).
    Undefined (division by √ᾱ = 0) for x₀ and v at a zero-SNR level."""
    _check(prediction_type)
    if prediction_type == "epsilon":
        return eps
    root, sigma = _levels(alpha_bar, x)
    if prediction_type == "sample":
        return (x - sigma * eps) / root
    return (eps - sigma * x) / root
