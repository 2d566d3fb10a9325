"""Ancestral loop over diffusers schedulers with the exact mixture denoiser, variance-preserving coordinates for the
MCMC hook under Euler schedulers, and chunked generation (seeding per chunk, process split, CFG special cases)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_class_unet
from diffusers import DDPMScheduler
from test_mcmc import DiffusedMixture, assert_matches, gen

from continual_diffusers.models.conditioning import ClassConditioning
from continual_diffusers.models.denoiser import DenoiserOutput, EnergyModel, ScoreModel
from continual_diffusers.sampling.analytic import gaussian
from continual_diffusers.sampling.ancestral import (
    DEFAULT_NUM_INFERENCE_STEPS,
    DEFAULT_SCHEDULER,
    make_sampling_scheduler,
    sample_ancestral,
)
from continual_diffusers.sampling.annealed import MCMCOptions
from continual_diffusers.sampling.generate import CompositionOptions, SamplerOptions, generate, generate_samples
from continual_diffusers.utils.errors import UserInputError

TRAIN = DDPMScheduler(num_train_timesteps=100, beta_start=1e-3, beta_end=0.2, clip_sample=False)


@pytest.mark.parametrize(
    "name, steps, tol",
    [
        ("ddpm", 100, 0.06),
        ("ddpm", 25, 0.1),
        ("ddim", 25, 0.1),
        ("dpm++", 20, 0.1),
        ("dpm++_karras", 20, 0.1),
        ("dpm++_sde", 25, 0.1),
        ("dpm++_logsnr", 20, 0.1),
        ("dpm++_sde_logsnr", 25, 0.1),
        ("ddpm_large", 50, 0.1),
        ("unipc", 20, 0.1),
        ("euler", 25, 0.1),
        ("euler_a", 50, 0.1),
    ],
)
def test_schedulers_sample_the_mixture(name, steps, tol):
    scheduler = make_sampling_scheduler(name, TRAIN.config)
    mix = DiffusedMixture(TRAIN.alphas_cumprod)
    x = sample_ancestral(mix, scheduler, (2000, 2), steps, gen(0), clamp=False)
    assert_matches(x, mix.sample(2000, gen(1)), mean_tol=tol, std_tol=tol)


class VelocityMixture(DiffusedMixture):
    """The exact v = √ᾱ_t ε − σ_t x₀ of the mixture, from its posterior mean (defined at ᾱ_t = 0 too, where ε
    and Tweedie's formula are not): E[x₀ | x_t, k] = μ_k + s_k²√ᾱ (x_t − √ᾱ μ_k)/(ᾱ s_k² + σ²), weighted by the
    responsibilities; v = (√ᾱ x_t − E[x₀ | x_t])/σ."""

    def __call__(self, x, t, **cond):
        xd, ab = x.double(), self.alphas_cumprod[t.long()].double()[:, None]
        var = ab * self.stds**2 + (1 - ab)  # (B, K)
        diff = xd[:, None, :] - ab.sqrt()[..., None] * self.means  # (B, K, 2)
        logc = self.log_pi - diff.pow(2).sum(-1) / (2 * var) - torch.log(var)
        post = self.means + (self.stds**2 * ab.sqrt() / var)[..., None] * diff  # (B, K, 2)
        x0 = (logc.softmax(1)[..., None] * post).sum(1)
        v = (ab.sqrt() * xd - x0) / (1 - ab).sqrt()
        return DenoiserOutput(v.to(x.dtype), None)


@pytest.mark.parametrize(
    "name, steps", [("ddpm", 25), ("ddim", 25), ("dpm++", 20), ("dpm++_logsnr", 20), ("unipc", 20), ("euler_a", 50)]
)
def test_zero_terminal_snr_schedules_sample_the_mixture_from_t_max(name, steps):
    """ᾱ_T = 0 (Lin et al. 2024): sampling starts at t = T−1 (trailing) and draws the mixture from the exact v."""
    train = DDPMScheduler(
        num_train_timesteps=100,
        beta_start=1e-3,
        beta_end=0.2,
        clip_sample=False,
        rescale_betas_zero_snr=True,
        prediction_type="v_prediction",
    )
    assert train.alphas_cumprod[-1] == 0
    scheduler = make_sampling_scheduler(name, train.config)
    scheduler.set_timesteps(steps)
    assert int(scheduler.timesteps[0]) == 99
    mix = VelocityMixture(train.alphas_cumprod)
    x = sample_ancestral(mix, scheduler, (2000, 2), steps, gen(0), clamp=False)
    assert_matches(x, mix.sample(2000, gen(1)), mean_tol=0.1, std_tol=0.1)


@pytest.mark.parametrize(
    "prediction_type, zero_snr", [("epsilon", False), ("v_prediction", False), ("v_prediction", True)]
)
def test_default_sampler_keeps_the_spread_of_a_narrow_gaussian(prediction_type, zero_snr):
    """With the exact denoiser of N(0.2, 0.2²) on the default 1000-step linear schedule, the default sampler draws a
    std within 3 % of 0.2 (20,000 samples: one standard error is 0.5 %). Strided DDPM-25 draws 0.69 of it: each
    ancestral step plugs in E[x₀|x_t] and drops Var[x₀|x_t], and its last step alone spans SNR 48 → 1e4."""
    train = DDPMScheduler(prediction_type=prediction_type, clip_sample=False, rescale_betas_zero_snr=zero_snr)
    target = gaussian(train.alphas_cumprod, 0.2, 0.2, 1, prediction_type)

    def draw(name, steps):
        scheduler = make_sampling_scheduler(name, train.config)
        return sample_ancestral(target, scheduler, (20_000, 1, 1, 1), steps, gen(0), clamp=False)

    x = draw(DEFAULT_SCHEDULER, DEFAULT_NUM_INFERENCE_STEPS)
    assert abs(float(x.std()) / 0.2 - 1) < 0.03 and abs(float(x.mean()) - 0.2) < 0.01
    assert float(draw("ddpm", 25).std()) / 0.2 < 0.75


def test_a_repeated_first_timestep_still_runs_every_step():
    """Karras σ on the zero-terminal-SNR 1000-step schedule round to t = 995, 995, … at 50 steps; the loop must
    start at step 0 (it used to look the timestep up, start at the second match and fail at the end)."""
    train = DDPMScheduler(prediction_type="v_prediction", rescale_betas_zero_snr=True, clip_sample=False)
    scheduler = make_sampling_scheduler("dpm++_karras", train.config)
    scheduler.set_timesteps(50)
    assert int(scheduler.timesteps[0]) == int(scheduler.timesteps[1])
    target = gaussian(train.alphas_cumprod, 0.2, 0.5, 1, "v_prediction")
    x = sample_ancestral(target, scheduler, (4000, 1, 1, 1), 50, gen(0), clamp=False)
    assert abs(float(x.std()) / 0.5 - 1) < 0.05 and abs(float(x.mean()) - 0.2) < 0.03


@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_ddim_eta_samples_the_mixture(eta):
    """With the exact ε every η gives the same marginals (Song et al. 2021, Eq. 12 holds for any σ_t)."""
    scheduler = make_sampling_scheduler("ddim", TRAIN.config)
    mix = DiffusedMixture(TRAIN.alphas_cumprod)
    x = sample_ancestral(mix, scheduler, (2000, 2), 25, gen(0), clamp=False, eta=eta)
    assert_matches(x, mix.sample(2000, gen(1)), mean_tol=0.1, std_tol=0.1)


def test_eta_changes_ddim_and_is_refused_by_schedulers_without_it():
    mix = DiffusedMixture(TRAIN.alphas_cumprod)
    a = sample_ancestral(mix, make_sampling_scheduler("ddim", TRAIN.config), (8, 2), 10, gen(0), clamp=False)
    b = sample_ancestral(mix, make_sampling_scheduler("ddim", TRAIN.config), (8, 2), 10, gen(0), clamp=False, eta=1.0)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="applies to --scheduler ddim, not DDPMScheduler"):
        sample_ancestral(mix, make_sampling_scheduler("ddpm", TRAIN.config), (8, 2), 10, gen(0), eta=0.5)


def test_hook_sees_variance_preserving_coordinates_under_euler():
    scheduler = make_sampling_scheduler("euler_a", TRAIN.config)
    seen = {}

    def hook(x, t):
        seen[t] = float(x.std())
        return x

    sample_ancestral(DiffusedMixture(TRAIN.alphas_cumprod), scheduler, (4000, 2), 10, gen(0), level_hook=hook)
    first = max(seen)
    assert abs(seen[first] - 1.0) < 0.05  # x_T ~ N(0, I) in VP coordinates, although Euler's own x has std σ_max


@pytest.fixture(scope="module")
def tiny_class_model():
    unet = tiny_class_unet(4)
    return unet, ClassConditioning(3, null_class=True)


def test_chunks_are_seeded_independently_of_the_process_split(tiny_class_model):
    unet, cond = tiny_class_model
    model, labels = ScoreModel(unet).eval(), [0, 0, 1, 1, 2]
    opts = SamplerOptions("ddpm", 3, 2.0, batch_size=2, seed=7)
    full = generate_samples(model, cond, TRAIN, labels, opts, "cpu")
    split = generate(model, cond, TRAIN, labels, opts, "cpu", [0, 2]).chunks
    split.update(generate(model, cond, TRAIN, labels, opts, "cpu", [1]).chunks)
    assert full.shape == (5, 3, 8, 8) and torch.equal(full, torch.cat([split[i] for i in range(3)]))


def test_guidance_zero_is_unconditional_sampling(tiny_class_model):
    unet, cond = tiny_class_model
    model = ScoreModel(unet).eval()
    zero = generate_samples(model, cond, TRAIN, [0, 1], SamplerOptions("ddim", 3, 0.0, seed=1), "cpu")
    other = generate_samples(model, cond, TRAIN, [2, 2], SamplerOptions("ddim", 3, 0.0, seed=1), "cpu")
    guided = generate_samples(model, cond, TRAIN, [0, 1], SamplerOptions("ddim", 3, 3.0, seed=1), "cpu")
    torch.testing.assert_close(zero, other)  # only the null condition is used
    assert not torch.allclose(zero, guided)


def test_energy_model_with_mcmc_and_composition_records_acceptance(tiny_class_model):
    unet, cond = tiny_class_model
    model = EnergyModel(unet, "l2").eval()
    mcmc = MCMCOptions("CHA", num_steps=1, num_leapfrog_steps=2, start_timestep=50)
    opts = SamplerOptions("ddpm", 4, 2.0, seed=0, mcmc=mcmc, composition=CompositionOptions((0, 2), (2.0, -1.0)))
    out = generate(model, cond, TRAIN, [None, None], opts, "cpu")
    assert out.images().shape == (2, 3, 8, 8) and set(out.acceptance_rates()) == {75, 50}  # t ≥ 50 of 75, 50, 25, 0
    assert out.num_grad_evals == 2 * (1 + 1 * 2)


@pytest.mark.parametrize(
    "options, message",
    [
        (SamplerOptions(mcmc=MCMCOptions("MALA")), "MALA needs an energy model"),
        (SamplerOptions("unipc", mcmc=MCMCOptions("ULA")), "unipc is a multistep solver"),
        (SamplerOptions("dpm++", mcmc=MCMCOptions("UHA")), r"dpm\+\+ is a multistep solver"),
        (SamplerOptions(guidance_scale=-1.0), "guidance_scale must be >= 0"),
        (SamplerOptions("ddpm", eta=0.5), "applies to --scheduler ddim, not ddpm"),
        (SamplerOptions("ddim", eta=1.5), r"eta must be in \[0, 1\]"),
        (SamplerOptions(composition=CompositionOptions((0, 1), (1.0, 1.0), "mixture")), "needs an energy model"),
    ],
)
def test_refused_combinations(tiny_class_model, options, message):
    unet, cond = tiny_class_model
    with pytest.raises(UserInputError, match=message):
        generate(ScoreModel(unet), cond, TRAIN, [0], options, "cpu")
