"""Composition: single component is the identity, CFG / product / negation formulas, batched = separate forwards,
composed energies match the composed drift exactly, product of Gaussians and exact mixtures."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_class_unet
from diffusers import DDPMScheduler
from test_mcmc import DiffusedMixture, gen

from continual_diffusers.models.denoiser import EnergyModel, ScoreModel
from continual_diffusers.sampling.annealed import diffusion_target
from continual_diffusers.sampling.composition import combine_mixture, compose, compose_fns, conditioned
from continual_diffusers.sampling.mcmc import KernelParams, mala

ALPHAS = DDPMScheduler(num_train_timesteps=100, beta_start=1e-3, beta_end=0.2).alphas_cumprod
MEANS, STDS = ((-1.0, 0.5), (1.0, 1.0)), (0.5, 1.0)


def gaussian(k: int) -> DiffusedMixture:
    return DiffusedMixture(ALPHAS, weights=(1.0,), means=(MEANS[k],), stds=(STDS[k],))


@pytest.fixture(scope="module")
def tiny_energy():
    unet = tiny_class_unet(5)
    return EnergyModel(unet, "dae").eval().requires_grad_(False)


def _labels(c: int, n: int = 3) -> dict:
    return {"class_labels": torch.full((n,), c, dtype=torch.long)}


def test_single_component_is_identity():
    f = gaussian(0)
    x, t = torch.randn(6, 2, generator=gen(0)), torch.full((6,), 40)
    a, b = compose_fns([f], [1.0])(x, t), f(x, t)
    assert torch.equal(a.prediction, b.prediction) and torch.equal(a.energy, b.energy)


@pytest.mark.parametrize("max_batch", [None, 4])
def test_batched_composition_matches_separate_forwards(tiny_energy, max_batch):
    x, t = torch.randn(3, 3, 8, 8, generator=gen(0)), torch.tensor([3, 50, 90])
    weights, null = (2.0, -0.5), _labels(4)
    out = compose(tiny_energy, [_labels(0), _labels(2)], weights, null, max_batch=max_batch)(x, t)
    e0, e2, eu = (tiny_energy(x, t, **_labels(c)) for c in (0, 2, 4))
    eps = eu.prediction + 2.0 * (e0.prediction - eu.prediction) - 0.5 * (e2.prediction - eu.prediction)
    energy = eu.energy + 2.0 * (e0.energy - eu.energy) - 0.5 * (e2.energy - eu.energy)
    torch.testing.assert_close(out.prediction, eps, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.energy, energy, atol=1e-5, rtol=1e-4)


def test_composed_energy_gradient_is_the_composed_drift(tiny_energy):
    """What MALA/HMC test (E) and what drives the proposal (ε̂) are the same function: ∇ₓE_composed = ε̂_composed."""
    x, t = torch.randn(3, 3, 8, 8, generator=gen(1)), torch.tensor([10, 10, 10])
    conds, weights, null = [_labels(1), _labels(3), _labels(0)], (1.5, 1.0, -0.7), _labels(4)
    out = compose(tiny_energy, conds, weights, null)(x, t)
    with torch.enable_grad():
        xr = x.clone().requires_grad_(True)
        eu = tiny_energy.energy(xr, t, **null)
        e = eu + sum(w * (tiny_energy.energy(xr, t, **c) - eu) for w, c in zip(weights, conds))
        (grad,) = torch.autograd.grad(e.sum(), xr)
    torch.testing.assert_close(out.prediction, grad, atol=1e-5, rtol=1e-4)


def test_cfg_special_cases_skip_needless_forwards(tiny_energy):
    x, t = torch.randn(3, 3, 8, 8, generator=gen(2)), torch.tensor([5, 5, 5])
    calls = []

    def counting(x, t, **cond):
        calls.append(x.shape[0])
        return tiny_energy(x, t, **cond)

    out = compose(counting, [_labels(1)], [1.0], _labels(4))(x, t)
    assert calls == [3] and torch.equal(out.prediction, tiny_energy(x, t, **_labels(1)).prediction)
    out = compose(counting, [_labels(1)], [0.0], _labels(4))(x, t)
    assert calls == [3, 3] and torch.equal(out.prediction, tiny_energy(x, t, **_labels(4)).prediction)
    compose(counting, [_labels(1)], [3.0], _labels(4))(x, t)
    assert calls[-1] == 6  # conditional and null rows in one forward
    assert torch.equal(
        conditioned(tiny_energy, _labels(2))(x, t).prediction, tiny_energy(x, t, **_labels(2)).prediction
    )


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.3, -0.3)], ids=["product", "negation"])
def test_composition_of_two_gaussians_is_their_analytic_product(weights):
    """p₁^{w₁} p₂^{w₂} of two Gaussians at level t is Gaussian with precision Σ w_k/v_k; MALA on the composed
    energy samples it."""
    t = 2
    ab = float(ALPHAS[t])
    means = torch.tensor(MEANS) * ab**0.5
    var = torch.tensor([ab * s**2 + 1 - ab for s in STDS])
    w = torch.tensor(weights)
    precision = (w / var).sum()
    mean = (w[:, None] * means / var[:, None]).sum(0) / precision
    target = diffusion_target(compose_fns([gaussian(0), gaussian(1)], list(weights)), t, ALPHAS)
    x = mean + torch.randn(3000, 2, generator=gen(3)) * precision.rsqrt()  # start at the answer: invariance
    x = x + 0.5  # … shifted, so the sampler has to move
    out = mala(target, x, KernelParams(0.1, num_steps=150), gen(4))
    torch.testing.assert_close(out.x.mean(0), mean.float(), atol=0.04, rtol=0)
    torch.testing.assert_close(out.x.std(0), precision.rsqrt().float().expand(2), atol=0.04, rtol=0)


def test_mixture_of_normalised_energies_is_the_exact_mixture():
    mix = DiffusedMixture(ALPHAS, weights=(0.3, 0.7), means=MEANS, stds=STDS)
    x, t = torch.randn(8, 2, generator=gen(5)) * 2, torch.full((8,), 30)
    sigma = (1 - ALPHAS[t]).sqrt()
    out = combine_mixture([gaussian(0)(x, t), gaussian(1)(x, t)], [0.3, 0.7], sigma.float())
    ref = mix(x, t)
    torch.testing.assert_close(out.prediction, ref.prediction, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.energy, ref.energy, atol=1e-5, rtol=1e-4)


def test_mixture_through_compose_and_refusals(tiny_energy):
    x, t = torch.randn(3, 3, 8, 8, generator=gen(6)), torch.tensor([20, 20, 20])
    out = compose(tiny_energy, [_labels(0), _labels(1)], [0.5, 0.5], mode="mixture", alphas_cumprod=ALPHAS)(x, t)
    assert out.prediction.shape == x.shape and out.energy.shape == (3,)
    score = ScoreModel(tiny_energy.unet)
    with pytest.raises(ValueError, match="needs energies"):
        compose(score, [_labels(0), _labels(1)], [0.5, 0.5], mode="mixture", alphas_cumprod=ALPHAS)(x, t)
    with pytest.raises(ValueError, match="> 0"):
        compose(tiny_energy, [_labels(0), _labels(1)], [1.0, -1.0], mode="mixture", alphas_cumprod=ALPHAS)(x, t)
    with pytest.raises(ValueError, match="one weight per condition"):
        compose(tiny_energy, [_labels(0)], [1.0, 2.0])
