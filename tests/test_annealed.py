"""Annealed MCMC inside the ancestral loop, on the exact score / energy of a diffused 2-D Gaussian mixture (no
training): every kernel reproduces the target; the MCMC window, noise level, acceptance log and step sizes."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler
from test_mcmc import DiffusedMixture, assert_matches, gen

from continual_diffusers.sampling.ancestral import sample_ancestral
from continual_diffusers.sampling.annealed import AnnealedMCMC, MCMCOptions, diffusion_target
from continual_diffusers.sampling.parameterisation import epsilon_from_prediction

# 100 steps, β from 1e-3 to 0.2 (the reference's 100-step image setting): ᾱ_T ≈ 4e-5.
SCHEDULE = dict(num_train_timesteps=100, beta_start=1e-3, beta_end=0.2, clip_sample=False)
SETTINGS = {  # (multiplier, K): MALA/ULA η_t = mult·β_t; UHA/HMC leapfrog ε_t = mult·β_t, m_t = β_t
    "ULA": (0.05, 2),
    "MALA": (0.5, 2),
    "UHA": (0.1, 2),
    "CHA": (0.3, 2),
}


def annealed(name: str, num_chains: int, seed: int = 0, energy: bool = True, **config):
    scheduler = DDPMScheduler(**SCHEDULE)
    mix = DiffusedMixture(scheduler.alphas_cumprod, energy=energy)
    mult, k = SETTINGS[name]
    cfg = MCMCOptions(
        name, **{"num_steps": k, "step_size_multiplier": mult, "damping": 0.5, "start_timestep": 0, **config}
    )
    g = gen(seed)
    hook = AnnealedMCMC(mix, cfg, scheduler, g)
    x = sample_ancestral(mix, scheduler, (num_chains, 2), 100, g, level_hook=hook, clamp=False)
    return x, hook, mix


@pytest.mark.parametrize("name", list(SETTINGS))
def test_annealed_kernels_reproduce_the_mixture(name):
    x, hook, mix = annealed(name, 2000)
    assert_matches(x, mix.sample(2000, gen(99)), mean_tol=0.07, std_tol=0.07)
    rates = hook.acceptance_rates()
    assert list(rates) == list(range(99, -1, -1))  # every level, high noise first
    if name in ("MALA", "CHA"):
        assert 0.5 < sum(rates.values()) / len(rates) < 1.0
    else:
        assert all(r == 1.0 for r in rates.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SETTINGS))
def test_annealed_kernels_two_sample_ks_slow(name):
    from scipy.stats import ks_2samp

    x, _, mix = annealed(name, 20000)
    ref = mix.sample(20000, gen(99))
    assert_matches(x, ref, mean_tol=0.03, std_tol=0.03)
    for d in range(2):
        assert ks_2samp(x[:, d].numpy(), ref[:, d].numpy()).pvalue > 1e-3


def test_window_is_start_to_max_inclusive():
    _, hook, _ = annealed("MALA", 64, start_timestep=50, max_timestep=80)
    assert sorted(hook.acceptance_rates()) == list(range(50, 81))
    _, hook, _ = annealed("ULA", 8, start_timestep=50)  # upstream meaning: t >= 50, up to T - 1
    assert sorted(hook.acceptance_rates()) == list(range(50, 100))


def test_score_model_runs_unadjusted_kernels_only():
    x, hook, _ = annealed("UHA", 32, energy=False)
    assert x.shape == (32, 2) and hook.num_grad_evals == 100 * (1 + 2 * 3)
    with pytest.raises(ValueError, match="needs log p"):
        annealed("MALA", 4, energy=False)


def test_target_is_at_the_samples_noise_level():
    """The hook sees x at level t and the target of level t: its score is the exact ∇log p_t."""
    scheduler = DDPMScheduler(**SCHEDULE)
    mix = DiffusedMixture(scheduler.alphas_cumprod)
    seen = {}

    def hook(x, t):
        seen[t] = x.std(0)
        return x

    sample_ancestral(mix, scheduler, (4000, 2), 100, gen(0), level_hook=hook, clamp=False)
    for t in (99, 60, 30, 5):
        ref = mix.sample(4000, gen(1), float(scheduler.alphas_cumprod[t])).std(0)
        torch.testing.assert_close(seen[t], ref, atol=0.05, rtol=0.05)
    x = mix.sample(5, gen(2), float(scheduler.alphas_cumprod[30]))
    logp, grad = diffusion_target(mix, 30, scheduler.alphas_cumprod)(x)
    ref_logp, ref_score = mix.log_prob_and_score(x, scheduler.alphas_cumprod[[30] * 5])
    torch.testing.assert_close(grad, ref_score.float()) and torch.testing.assert_close(logp, ref_logp.float())


def test_step_sizes_tied_to_the_schedule():
    scheduler = DDPMScheduler(**SCHEDULE)
    hook = AnnealedMCMC(lambda x, t: None, MCMCOptions("CHA", step_size_multiplier=0.1, damping=0.7), scheduler, None)
    p = hook.params_at(40)
    beta = float(scheduler.betas[40])
    assert p.step_size == pytest.approx(0.1 * beta) and p.mass == pytest.approx(beta) and p.damping == 0.7


@pytest.mark.parametrize("kind", ["sample", "v_prediction"])
def test_epsilon_from_other_prediction_types(kind):
    ab = torch.tensor(0.6)
    x0, eps = torch.randn(3, 2, generator=gen(0)), torch.randn(3, 2, generator=gen(1))
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    pred = x0 if kind == "sample" else ab.sqrt() * eps - (1 - ab).sqrt() * x0
    torch.testing.assert_close(epsilon_from_prediction(pred, xt, ab, kind), eps)


@pytest.mark.parametrize(
    "bad", [dict(sampler="XYZ"), dict(damping=1.5), dict(step_size_multiplier=0.0), dict(num_steps=0)]
)
def test_config_validation(bad):
    with pytest.raises(ValueError):
        MCMCOptions(**{"sampler": "ULA", **bad})
