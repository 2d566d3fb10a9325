"""MCMC kernels on analytic targets: invariance, MALA's correct proposal density, Hamiltonian conservation,
per-chain acceptance, purity (no input mutation), gradient-evaluation counts. Also hosts the analytic diffused
Gaussian mixture other sampling tests import."""

from __future__ import annotations

import math

import pytest
import torch

from continual_diffusers.models.denoiser import DenoiserOutput
from continual_diffusers.sampling.mcmc import KERNELS, KernelParams, hmc, leapfrog, mala, uha, ula


class DiffusedMixture:
    """Exact ε̂ and energy of an isotropic 2-D Gaussian mixture diffused by x_t = √ᾱ_t x₀ + σ_t ε:
    p_t = Σ_k π_k N(√ᾱ_t μ_k, (ᾱ_t s_k² + σ_t²) I);  ε̂ = −σ_t ∇log p_t;  E = −σ_t log p_t (so log p̃ = −E/σ_t)."""

    def __init__(
        self, alphas_cumprod, weights=(0.3, 0.7), means=((-1.5, 0.0), (1.5, 0.5)), stds=(0.3, 0.5), energy: bool = True
    ):
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        self.log_pi = torch.tensor(weights, dtype=torch.float64).log()
        self.means, self.stds = torch.tensor(means, dtype=torch.float64), torch.tensor(stds, dtype=torch.float64)
        self.energy = energy
        self.training = False

    def log_prob_and_score(self, x: torch.Tensor, alpha_bar: torch.Tensor):
        """x (B, 2), alpha_bar (B,) → log p_t (B,), ∇log p_t (B, 2)."""
        xd, ab = x.double(), alpha_bar.double()[:, None]
        var = ab * self.stds**2 + (1 - ab)  # (B, K)
        diff = xd[:, None, :] - ab.sqrt()[..., None] * self.means  # (B, K, 2)
        logc = self.log_pi - diff.pow(2).sum(-1) / (2 * var) - torch.log(2 * math.pi * var)
        logp = logc.logsumexp(1)
        score = (logc.softmax(1)[..., None] * (-diff / var[..., None])).sum(1)
        return logp, score

    def __call__(self, x: torch.Tensor, t: torch.Tensor, **cond) -> DenoiserOutput:
        ab = self.alphas_cumprod[t.long()]
        logp, score = self.log_prob_and_score(x, ab)
        sigma = (1 - ab).sqrt()
        eps = (-sigma[:, None] * score).to(x.dtype)
        return DenoiserOutput(eps, (-sigma * logp).to(x.dtype) if self.energy else None)

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def sample(self, n: int, generator: torch.Generator, alpha_bar: float = 1.0) -> torch.Tensor:
        """Exact samples of p_t (alpha_bar = ᾱ_t; 1 = data)."""
        k = torch.multinomial(self.log_pi.exp(), n, replacement=True, generator=generator)
        std = (alpha_bar * self.stds[k] ** 2 + 1 - alpha_bar).sqrt()
        z = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        return (alpha_bar**0.5 * self.means[k] + std[:, None] * z).float()


def gaussian_target(mean=0.0, std=1.0):
    def target(x):
        return -0.5 * ((x - mean) / std).pow(2).flatten(1).sum(1), -(x - mean) / std**2

    return target


def mixture_target(mixture: DiffusedMixture, alpha_bar: float = 1.0):
    def target(x):
        logp, score = mixture.log_prob_and_score(x, torch.full((x.shape[0],), alpha_bar))
        return logp.float(), score.float()

    return target


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_matches(samples: torch.Tensor, reference: torch.Tensor, mean_tol: float, std_tol: float, split=0.0):
    """Mode weight (side of x₀ = split), per-mode means and stds agree."""
    w_s, w_r = (samples[:, 0] > split).float().mean(), (reference[:, 0] > split).float().mean()
    assert abs(w_s - w_r) < 0.05, (w_s, w_r)
    for side in (samples[:, 0] > split, reference[:, 0] > split), (samples[:, 0] <= split, reference[:, 0] <= split):
        a, b = samples[side[0]], reference[side[1]]
        torch.testing.assert_close(a.mean(0), b.mean(0), atol=mean_tol, rtol=0)
        torch.testing.assert_close(a.std(0), b.std(0), atol=std_tol, rtol=0)


# ------------------------------------------------------------------------------------------------ invariance
@pytest.mark.parametrize("name, step", [("MALA", 0.05), ("CHA", 0.15), ("ULA", 0.002), ("UHA", 0.03)])
def test_kernels_keep_the_mixture_invariant(name, step):
    mix = DiffusedMixture([1.0])
    x0 = mix.sample(2000, gen(1))
    params = KernelParams(step, num_steps=30, num_leapfrog_steps=3, damping=0.5, mass=1.0)
    out = KERNELS[name](mixture_target(mix), x0, params, gen(2))
    assert_matches(out.x, mix.sample(2000, gen(3)), mean_tol=0.06, std_tol=0.06)
    assert not torch.equal(out.x, x0)


@pytest.mark.parametrize("kernel, step", [(mala, 0.3), (hmc, 1.2)])
def test_corrected_kernels_exact_at_large_steps(kernel, step):
    """At steps where the unadjusted dynamics are badly biased, the MH test must still give N(0, 1): this fails with
    the reference's 2η² proposal normaliser (variance 6.2 here) and with a kinetic term that cancels (0.61)."""
    x = torch.randn(4000, 2, generator=gen(0))
    out = kernel(gaussian_target(), x, KernelParams(step, num_steps=20, num_leapfrog_steps=2, damping=0.5), gen(1))
    assert abs(out.x.var() - 1) < 0.07 and abs(out.x.mean()) < 0.05
    biased = ula(gaussian_target(), x, KernelParams(step, num_steps=20), gen(1)).x
    assert biased.var() > 1.1  # ULA's stationary variance is 1/(1 − η/2)


def test_mala_acceptance_tends_to_one():
    mix, x = DiffusedMixture([1.0]), DiffusedMixture([1.0]).sample(1000, gen(0))
    rates = [
        float(mala(mixture_target(mix), x, KernelParams(eta, num_steps=5), gen(1)).acceptance.mean())
        for eta in (1e-1, 1e-2, 1e-3, 1e-4)
    ]
    assert rates == sorted(rates) and rates[0] < 0.9 and rates[-1] > 0.995, rates


def test_leapfrog_conserves_hamiltonian_to_second_order():
    target, mass = mixture_target(DiffusedMixture([0.5])), 0.7
    x = torch.randn(500, 2, generator=gen(0))
    v = mass * torch.randn(500, 2, generator=gen(1))
    logp, grad = target(x)
    h0 = -logp + 0.5 * (v / mass).pow(2).sum(1)
    errors = []
    for eps, steps in ((0.02, 25), (0.01, 50), (0.005, 100)):  # same trajectory length
        _, v1, logp1, _ = leapfrog(target, x, v, grad, eps, mass, steps)
        errors.append(float((-logp1 + 0.5 * (v1 / mass).pow(2).sum(1) - h0).abs().max()))
    assert 3.0 < errors[0] / errors[1] < 5.0 and 3.0 < errors[1] / errors[2] < 5.0, errors


# ------------------------------------------------------------------------------------------------ per chain
def _one_bad_chain_target(x):
    """Chain 0 sits in a very steep well (its proposals are always rejected); the others see a flat density."""
    scale = torch.ones(x.shape[0], 1)
    scale[0] = 1e6
    return -0.5 * (scale * x.pow(2)).sum(1), -scale * x


@pytest.mark.parametrize("kernel", [mala, hmc])
def test_single_chain_reject_leaves_other_chains_untouched(kernel):
    x = torch.full((8, 2), 0.5)
    x_before = x.clone()
    out = kernel(_one_bad_chain_target, x, KernelParams(0.1, num_steps=1, num_leapfrog_steps=2), gen(0))
    assert torch.equal(x, x_before)  # the caller's tensor is not modified
    assert torch.equal(out.x[0], x[0]) and out.acceptance[0] == 0
    assert (out.acceptance[1:] == 1).all() and not torch.isclose(out.x[1:], x[1:]).any()


def test_hmc_reject_negates_momentum_and_chains_are_independent():
    x = torch.full((4, 2), 0.5)
    out = hmc(_one_bad_chain_target, x, KernelParams(0.1, num_steps=1, num_leapfrog_steps=2, damping=1.0), gen(0))
    # with γ = 1 the refreshed momentum is the initial draw; a rejected chain returns it negated
    v0 = torch.randn(x.shape, generator=gen(0))
    torch.testing.assert_close(out.momentum[0], -v0[0])
    half = hmc(_one_bad_chain_target, x[:2], KernelParams(0.1, num_steps=1, num_leapfrog_steps=2), gen(0))
    assert torch.equal(half.x[0], x[0])


@pytest.mark.parametrize("name", list(KERNELS))
def test_gradient_evaluation_count_and_determinism(name):
    calls = []

    def target(x):
        calls.append(1)
        return gaussian_target()(x)

    x = torch.randn(16, 3, 4, 4, generator=gen(0))
    params = KernelParams(0.01, num_steps=4, num_leapfrog_steps=3)
    a = KERNELS[name](target, x, params, gen(5))
    expected = {"ULA": 4, "MALA": 1 + 4, "UHA": 1 + 4 * 3, "CHA": 1 + 4 * 3}[name]
    assert len(calls) == a.num_grad_evals == expected
    b = KERNELS[name](target, x, params, gen(5))
    assert torch.equal(a.x, b.x) and a.x.shape == x.shape and a.acceptance.shape == (16,)


@pytest.mark.parametrize("kernel", [mala, hmc])
def test_corrected_kernels_refuse_score_only_targets(kernel):
    with pytest.raises(ValueError, match="needs log p"):
        kernel(lambda x: (None, -x), torch.zeros(2, 2), KernelParams(0.1), gen(0))


def test_unadjusted_kernels_accept_score_only_targets():
    x = torch.zeros(2, 2)
    assert ula(lambda z: (None, -z), x, KernelParams(0.1), gen(0)).x.shape == x.shape
    assert uha(lambda z: (None, -z), x, KernelParams(0.1), gen(0)).x.shape == x.shape


@pytest.mark.slow
@pytest.mark.parametrize("name, step", [("MALA", 0.05), ("CHA", 0.15)])
def test_corrected_kernels_invariance_ks_slow(name, step):
    from scipy.stats import ks_2samp

    mix = DiffusedMixture([1.0])
    out = KERNELS[name](
        mixture_target(mix),
        mix.sample(20000, gen(1)),
        KernelParams(step, num_steps=100, num_leapfrog_steps=3, damping=0.5),
        gen(2),
    )
    ref = mix.sample(20000, gen(3))
    for d in range(2):
        assert ks_2samp(out.x[:, d].numpy(), ref[:, d].numpy()).pvalue > 1e-3
