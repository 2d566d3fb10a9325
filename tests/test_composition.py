"""Composition: single component is the identity, CFG / product / negation formulas, batched = separate forwards,
composed energies match the composed drift exactly, product of Gaussians and exact mixtures, and the same ε for
x₀ / v models as for ε models (with and without a null condition)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_class_unet
from diffusers import DDPMScheduler
from test_mcmc import DiffusedMixture, gen

from continual_diffusers.models.conditioning import ClassConditioning
from continual_diffusers.models.denoiser import DenoiserOutput, EnergyModel, ScoreModel
from continual_diffusers.sampling.analytic import GaussianMixtureDenoiser
from continual_diffusers.sampling.annealed import diffusion_target
from continual_diffusers.sampling.composition import combine_mixture, compose, compose_fns, conditioned
from continual_diffusers.sampling.generate import CompositionOptions, SamplerOptions, generate
from continual_diffusers.sampling.mcmc import KernelParams, mala
from continual_diffusers.sampling.parameterisation import epsilon_from_prediction
from continual_diffusers.utils.errors import UserInputError

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


class AnalyticConcepts:
    """A class "model" with exact predictions of parameterisation `prediction_type`: label 0 and 1 are the two
    Gaussians of MEANS/STDS, label 2 (the null condition) is their equal mixture."""

    def __init__(self, prediction_type: str, alphas=ALPHAS):
        parts = [((1.0,), (MEANS[0],), (STDS[0],)), ((1.0,), (MEANS[1],), (STDS[1],)), ((0.5, 0.5), MEANS, STDS)]
        self.denoisers = [GaussianMixtureDenoiser(alphas, *part, prediction_type) for part in parts]

    def __call__(self, x, t, class_labels):
        preds = torch.stack([d(x, t).prediction for d in self.denoisers])  # (3, B, 2)
        return DenoiserOutput(preds[class_labels, torch.arange(x.shape[0])], None)


def _eps_of(out, x, t, prediction_type, alphas=ALPHAS):
    return epsilon_from_prediction(out.prediction.double(), x.double(), alphas[t].double(), prediction_type)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.3, -0.5), (2.0, -1.0)], ids=["product", "negation", "sum-1"])
def test_product_without_null_is_the_sum_of_epsilons_in_every_parameterisation(prediction_type, weights):
    """p ∝ p₁^{w₁} p₂^{w₂} has ε = w₁ε₁ + w₂ε₂ (a sum of scores). A v or x₀ model composed without a null condition
    must give exactly that ε; Σ w_k v_k (or Σ w_k x₀_k) is off by (W − 1)σ_t/√ᾱ_t·x_t (v) for W = Σ w_k ≠ 1."""
    x, t = torch.randn(64, 2, generator=gen(7)) * 1.5, torch.arange(0, 100, 100 // 64 + 1).repeat(2)[:64]
    expected = sum(w * gaussian(k)(x, t).prediction.double() for k, w in enumerate(weights))
    model = AnalyticConcepts(prediction_type)
    out = compose(
        model, [_labels(0, 64), _labels(1, 64)], weights, alphas_cumprod=ALPHAS, prediction_type=prediction_type
    )(x, t)
    torch.testing.assert_close(_eps_of(out, x, t, prediction_type), expected, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_guided_composition_is_the_same_in_every_parameterisation(prediction_type):
    """With a null condition the combination ε_∅ + Σ w_k(ε_k − ε_∅) is affine (coefficients sum to 1), so forming
    it in v or x₀ gives the same ε as forming it in ε."""
    x, t = torch.randn(64, 2, generator=gen(8)) * 1.5, torch.arange(0, 100, 100 // 64 + 1).repeat(2)[:64]
    eps = AnalyticConcepts("epsilon")
    e0, e1, en = (eps(x, t, torch.full((64,), k)).prediction.double() for k in range(3))
    for weights in [(3.0,), (2.0, -1.0), (1.5, 0.7)]:
        conds = [_labels(k, 64) for k in range(len(weights))]
        model = AnalyticConcepts(prediction_type)
        out = compose(model, conds, weights, _labels(2, 64), alphas_cumprod=ALPHAS, prediction_type=prediction_type)
        expected = en + sum(w * (e - en) for w, e in zip(weights, (e0, e1)))
        torch.testing.assert_close(_eps_of(out(x, t), x, t, prediction_type), expected, atol=2e-4, rtol=1e-4)


def test_product_without_null_is_refused_where_its_v_is_infinite():
    """At ᾱ_T = 0 (zero terminal SNR) the v of Σ w_k ε_k with Σ w_k ≠ 1 is infinite: refused, before sampling."""
    train = DDPMScheduler(num_train_timesteps=100, rescale_betas_zero_snr=True, prediction_type="v_prediction")
    model = AnalyticConcepts("v_prediction", train.alphas_cumprod)
    conds = [_labels(0), _labels(1)]
    with pytest.raises(UserInputError, match="no finite v_prediction"):
        compose(model, conds, (1.0, 1.0), alphas_cumprod=train.alphas_cumprod, prediction_type="v_prediction")
    out = compose(model, conds, (2.0, -1.0), alphas_cumprod=train.alphas_cumprod, prediction_type="v_prediction")
    assert torch.isfinite(out(torch.randn(3, 2), torch.full((3,), 99)).prediction).all()  # W = 1: exact, finite
    unet = tiny_class_unet(3)
    options = SamplerOptions("ddpm", 2, composition=CompositionOptions((0, 1), (1.0, 1.0)))
    with pytest.raises(UserInputError, match="no finite v_prediction"):
        generate(ScoreModel(unet), ClassConditioning(3, null_class=False), train, [None], options, "cpu")
