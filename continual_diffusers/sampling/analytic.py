"""Exact denoisers of diffused Gaussian mixtures, to measure samplers against a known answer.

For p₀ = Σ_k π_k N(μ_k, s_k² I) in D dimensions and x_t = √ᾱ_t x₀ + σ_t ε (σ_t² = 1 − ᾱ_t), the noisy marginal and
the posterior are Gaussian per component:

    p_t = Σ_k π_k N(√ᾱ_t μ_k, (ᾱ_t s_k² + σ_t²) I),
    E[x₀ | x_t, k] = μ_k + s_k² √ᾱ_t (x_t − √ᾱ_t μ_k)/(ᾱ_t s_k² + σ_t²),
    E[x₀ | x_t] = Σ_k r_k(x_t) E[x₀ | x_t, k],   r_k ∝ π_k N(x_t; √ᾱ_t μ_k, (ᾱ_t s_k² + σ_t²) I).

The minimiser of every denoising loss is a function of this posterior mean (x₀-prediction: itself; ε = (x_t −
√ᾱ_t x̂₀)/σ_t; v = (√ᾱ_t x_t − x̂₀)/σ_t, defined at ᾱ_t = 0 too), so a sampler run with it is run with a perfectly
trained model, and every gap between its samples and p₀ is the sampler's. One component is a Gaussian target.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..models.denoiser import DenoiserOutput
from .parameterisation import PREDICTION_TYPES


class GaussianMixtureDenoiser:
    """`denoiser(x (B, *shape), t (B,)) -> DenoiserOutput(prediction, None)`, the exact ε / x₀ / v of the diffused
    mixture, computed in float64; `shape` is any shape with D elements (e.g. (1, 8, 8) for D = 64).

    Args:
        alphas_cumprod: (T,) ᾱ of the training schedule (t indexes it).
        weights: (K,) mixture weights π_k (normalised here).
        means: (K, D) component means μ_k.
        stds: (K,) isotropic component standard deviations s_k > 0.
        prediction_type: "epsilon", "sample" (x₀) or "v_prediction".
    """

    def __init__(
        self,
        alphas_cumprod: torch.Tensor,
        weights: Sequence[float],
        means: Sequence[Sequence[float]] | torch.Tensor,
        stds: Sequence[float],
        prediction_type: str = "epsilon",
    ):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction_type {prediction_type!r}; choose one of {PREDICTION_TYPES}")
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64)
        self.log_pi = (weights / weights.sum()).log()
        self.means = torch.as_tensor(means, dtype=torch.float64)  # (K, D)
        self.stds = torch.as_tensor(stds, dtype=torch.float64)  # (K,)
        if self.means.dim() != 2 or self.means.shape[0] != len(self.stds) or len(self.log_pi) != len(self.stds):
            raise ValueError("need K weights, K standard deviations and (K, D) means")
        if not bool((self.stds > 0).all()):
            raise ValueError("component standard deviations must be > 0")
        self.prediction_type = prediction_type
        self.training = False

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def posterior_mean(self, x: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        """E[x₀ | x_t] for x (B, D) at levels alpha_bar (B,), float64 (B, D)."""
        ab = alpha_bar.double()[:, None]  # (B, 1)
        var = ab * self.stds**2 + (1 - ab)  # (B, K)
        diff = x.double()[:, None, :] - ab.sqrt()[..., None] * self.means  # (B, K, D)
        log_r = self.log_pi - diff.pow(2).sum(-1) / (2 * var) - 0.5 * self.dim * var.log()
        per_component = self.means + (self.stds**2 * ab.sqrt() / var)[..., None] * diff  # (B, K, D)
        return (log_r.softmax(1)[..., None] * per_component).sum(1)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, **cond) -> DenoiserOutput:
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.dim:
            raise ValueError(f"x has {flat.shape[1]} elements per row, the mixture {self.dim} dimensions")
        alpha_bar = self.alphas_cumprod[t.long().cpu()].to(x.device)
        x0 = self.posterior_mean(flat, alpha_bar)
        root, sigma = alpha_bar.sqrt()[:, None], (1 - alpha_bar).sqrt()[:, None]
        if self.prediction_type == "sample":
            pred = x0
        elif self.prediction_type == "epsilon":
            pred = (flat.double() - root * x0) / sigma
        else:
            pred = (root * flat.double() - x0) / sigma
        return DenoiserOutput(pred.to(x.dtype).view_as(x), None)

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n exact draws of p₀, (n, D) float64."""
        k = torch.multinomial(self.log_pi.exp(), n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[k] + self.stds[k, None] * z

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixture's per-dimension mean and standard deviation, (D,) each."""
        pi = self.log_pi.exp()[:, None]
        mean = (pi * self.means).sum(0)
        second = (pi * (self.means**2 + self.stds[:, None] ** 2)).sum(0)
        return mean, (second - mean**2).clamp(min=0).sqrt()


def gaussian(alphas_cumprod, mean: float, std: float, dim: int, prediction_type: str = "epsilon"):
    """The exact denoiser of N(mean·1, std² I_dim)."""
    return GaussianMixtureDenoiser(alphas_cumprod, [1.0], [[mean] * dim], [std], prediction_type)
