"""Composition of conditional denoisers into one denoise function (classifier-free guidance is the K = 1 case).

A denoise function is `denoise_fn(x (B, C, H, W), t (B,)) -> DenoiserOutput(prediction ε̂, energy E (B,) | None)`
with the conditions already bound. Because log p̃_t = −E/σ_t and ε̂ = ∇ₓE, every operator below is applied to ε̂
and to E with the same weights, so the energy an MH test uses is exactly the one whose gradient drives the sampler
(unlike the energy of Du et al.'s released CFG sampler, which subtracts E_∅ once for K concepts, so for K ≥ 2
its gradient is not the drift).

* Product / negation (Composable Diffusion, Liu et al. 2022; Du et al. 2023 §3):
    with a null condition:    ε = ε_∅ + Σ_k w_k (ε_k − ε_∅),   E = E_∅ + Σ_k w_k (E_k − E_∅)
    without one:              ε = Σ_k w_k ε_k,                  E = Σ_k w_k E_k   (p ∝ Π_k p_k^{w_k})
  A negative w_k negates concept k. One concept with weight w and a null condition is CFG with scale w.
  Both are sums of scores, i.e. of ε. A model that predicts x₀ or v gets the same composition: the guided sum is an
  affine combination (its coefficients sum to 1), which is the same in every parameterisation, so it is formed in
  the model's own; the sum without a null condition is not unless W = Σ_k w_k = 1 (Σ_k w_k v_k is off the v of
  Σ_k w_k ε_k by (W − 1)·σ_t/√ᾱ_t·x_t, `parameterisation.py`), so each prediction is converted to ε, summed and
  converted back. At ᾱ_t = 0 (the last step of a zero-terminal-SNR schedule) that x₀ or v is infinite for W ≠ 1:
  such a composition is refused (`check_composition`).
* Tempered mixture (energy models only; Du et al. 2023 §3, "OR"):
    E = −(σ_t/τ) logsumexp_k(log π_k − τ E_k/σ_t),   ε = Σ_k r_k ε_k  with  r = softmax_k(log π_k − τ E_k/σ_t).
  τ = 1 is the mixture of the unnormalised p̃_k (their normalising constants are unknown, so π_k weight the
  unnormalised densities); the reference notebook uses τ = 3.5.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch

from ..models.denoiser import DenoiserOutput
from ..utils.errors import UserInputError
from .parameterisation import epsilon_from_prediction, prediction_from_epsilon

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], DenoiserOutput]
CompositionMode = Literal["product", "mixture"]


def conditioned(model, cond: dict) -> DenoiseFn:
    """Bind conditioning kwargs (each (B, ...)) to a `ScoreModel` / `EnergyModel`."""
    return lambda x, t: model(x, t, **cond)


def _energy_sum(terms: Sequence[tuple[float, torch.Tensor | None]]) -> torch.Tensor | None:
    if any(e is None for _, e in terms):
        return None
    return sum(w * e for w, e in terms)


def combine_product(
    outputs: Sequence[DenoiserOutput], weights: Sequence[float], null: DenoiserOutput | None = None
) -> DenoiserOutput:
    """Product / negation of K outputs (ε̂ (B, ...), E (B,)); see the module docstring."""
    if len(outputs) != len(weights):
        raise ValueError(f"{len(outputs)} outputs but {len(weights)} weights")
    if null is None:
        eps = sum(w * o.prediction for w, o in zip(weights, outputs))
        return DenoiserOutput(eps, _energy_sum([(w, o.energy) for w, o in zip(weights, outputs)]))
    eps = null.prediction + sum(w * (o.prediction - null.prediction) for w, o in zip(weights, outputs))
    if null.energy is None or any(o.energy is None for o in outputs):
        return DenoiserOutput(eps, None)
    energy = null.energy + sum(w * (o.energy - null.energy) for w, o in zip(weights, outputs))
    return DenoiserOutput(eps, energy)


def combine_mixture(
    outputs: Sequence[DenoiserOutput], weights: Sequence[float], sigma: torch.Tensor, temperature: float = 1.0
) -> DenoiserOutput:
    """Tempered mixture Σ_k π_k p̃_k of energy outputs. weights: π_k > 0; sigma: (B,) σ_t per sample."""
    if any(o.energy is None for o in outputs):
        raise ValueError("a mixture needs energies: only energy models can be composed with mode='mixture'")
    if any(w <= 0 for w in weights):
        raise ValueError(f"mixture weights must be > 0, got {list(weights)}")
    energies = torch.stack([o.energy for o in outputs], dim=1)  # (B, K)
    log_pi = torch.log(torch.tensor(list(weights), dtype=energies.dtype, device=energies.device))
    logits = log_pi - temperature * energies / sigma[:, None]
    resp = logits.softmax(dim=1)  # r_k (B, K)
    eps = sum(resp[:, k].view(-1, *([1] * (o.prediction.dim() - 1))) * o.prediction for k, o in enumerate(outputs))
    energy = -(sigma / temperature) * logits.logsumexp(dim=1)
    return DenoiserOutput(eps, energy)


def _batched_forward(model, x: torch.Tensor, t: torch.Tensor, conds: Sequence[dict], max_batch: int | None):
    """One forward over all conditions: x (B, ...) repeated len(conds) times, split in chunks of ≤ max_batch rows."""
    n = len(conds)
    xs, ts = torch.cat([x] * n), torch.cat([t] * n)
    cond = {k: torch.cat([c[k] for c in conds]) for k in conds[0]}
    step = max_batch or xs.shape[0]
    parts = [
        model(xs[i : i + step], ts[i : i + step], **{k: v[i : i + step] for k, v in cond.items()})
        for i in range(0, xs.shape[0], step)
    ]
    eps = torch.cat([p.prediction for p in parts]).chunk(n)
    energy = None if parts[0].energy is None else torch.cat([p.energy for p in parts]).chunk(n)
    return [DenoiserOutput(eps[i], None if energy is None else energy[i]) for i in range(n)]


def _needs_epsilon_space(weights: Sequence[float], has_null: bool, prediction_type: str) -> bool:
    """Is the product a non-affine sum of x₀ / v predictions, to be formed in ε (see the module docstring)?"""
    return not has_null and prediction_type != "epsilon" and abs(sum(weights) - 1.0) > 1e-12


def check_composition(
    weights: Sequence[float], has_null: bool, prediction_type: str, alphas_cumprod: torch.Tensor | None
) -> None:
    """Refuse (`UserInputError`) a product that has no finite x₀ / v: without a null condition, Σ_k w_k ≠ 1, on a
    schedule with a zero-SNR level (ᾱ_t = 0). `alphas_cumprod`: the sampling schedule's (T,) ᾱ."""
    if not _needs_epsilon_space(weights, has_null, prediction_type):
        return
    if alphas_cumprod is None:
        raise ValueError(f"composing {prediction_type} predictions without a null condition needs alphas_cumprod")
    if float(alphas_cumprod.min()) == 0.0:
        raise UserInputError(
            f"composition weights summing to {sum(weights):g} without a null condition have no finite "
            f"{prediction_type} at the zero-SNR step of this schedule (ᾱ_T = 0): use weights that sum to 1, or a "
            "model trained with classifier-free guidance (--classifier_free_guidance)"
        )


def _product_in_epsilon(
    outputs: Sequence[DenoiserOutput], weights: Sequence[float], x, alpha_bar, prediction_type: str
) -> DenoiserOutput:
    """Σ_k w_k ε_k of x₀ / v outputs, returned in their parameterisation. alpha_bar: (B,) ᾱ_t per row."""
    eps = [
        DenoiserOutput(epsilon_from_prediction(o.prediction, x, alpha_bar, prediction_type), o.energy) for o in outputs
    ]
    combined = combine_product(eps, weights)
    return DenoiserOutput(prediction_from_epsilon(combined.prediction, x, alpha_bar, prediction_type), combined.energy)


def compose(
    model,
    conds: Sequence[dict],
    weights: Sequence[float],
    null: dict | None = None,
    mode: CompositionMode = "product",
    alphas_cumprod: torch.Tensor | None = None,
    temperature: float = 1.0,
    max_batch: int | None = None,
    prediction_type: str = "epsilon",
) -> DenoiseFn:
    """One denoise function from K conditions of one model, evaluated in a single batched forward (K or K+1 times
    the batch, chunked to `max_batch` rows).

    Args:
        model: `ScoreModel` / `EnergyModel`.
        conds: K conditioning dicts, each with (B, ...) tensors. Empty dicts mean "unconditional".
        weights: K weights w_k (product: any sign; mixture: π_k > 0).
        null: the null condition (B, ...) for the ε_∅-relative product; ignored for mixtures.
        alphas_cumprod: (T,) ᾱ of the sampling schedule, needed for σ_t in the mixture and for a product of x₀ / v
            predictions without a null condition (formed in ε).
        prediction_type: what the model predicts ("epsilon", "sample" = x₀, "v_prediction"); the composed output
            is in the same parameterisation.
    """
    if len(conds) != len(weights) or not conds:
        raise ValueError(f"need one weight per condition, got {len(conds)} conditions and {len(weights)} weights")
    if mode == "mixture" and alphas_cumprod is None:
        raise ValueError("mode='mixture' needs alphas_cumprod for σ_t")
    if mode == "product":
        check_composition(weights, null is not None, prediction_type, alphas_cumprod)
    in_epsilon = mode == "product" and _needs_epsilon_space(weights, null is not None, prediction_type)

    def denoise(x: torch.Tensor, t: torch.Tensor) -> DenoiserOutput:
        if mode == "mixture":
            sigma = (1 - alphas_cumprod.to(x.device)[t.long()]).sqrt().to(x.dtype)
            return combine_mixture(_batched_forward(model, x, t, conds, max_batch), weights, sigma, temperature)
        if len(conds) == 1 and weights[0] == 1.0:
            return model(x, t, **conds[0])  # plain conditional sampling: no null forward needed
        if null is None:
            outputs = _batched_forward(model, x, t, conds, max_batch)
            if in_epsilon:
                alpha_bar = alphas_cumprod.to(x.device)[t.long()]
                return _product_in_epsilon(outputs, weights, x, alpha_bar, prediction_type)
            return combine_product(outputs, weights)
        if all(w == 0.0 for w in weights):
            return model(x, t, **null)  # guidance 0: unconditional
        *outs, out_null = _batched_forward(model, x, t, [*conds, null], max_batch)
        return combine_product(outs, weights, out_null)

    return denoise


def compose_fns(fns: Sequence[DenoiseFn], weights: Sequence[float], null_fn: DenoiseFn | None = None) -> DenoiseFn:
    """Product / negation of separate denoise functions (e.g. different models, or analytic ones), summed as they
    are: ε predictions, or, for x₀ / v, weights that sum to 1 with a null function (see the module docstring)."""

    def denoise(x: torch.Tensor, t: torch.Tensor) -> DenoiserOutput:
        return combine_product([f(x, t) for f in fns], weights, None if null_fn is None else null_fn(x, t))

    return denoise
