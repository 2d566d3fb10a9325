"""DenoisingObjective: targets, min-SNR-γ weights in closed form, per-sample shapes, determinism."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from continual_diffusers.models.denoiser import DenoiserOutput
from continual_diffusers.objectives import DenoisingObjective, sample_timesteps


class Oracle(torch.nn.Module):
    """Predicts a fixed function of its inputs so the loss can be computed by hand."""

    def forward(self, x, t, **cond):
        return DenoiserOutput(x * 0.5, None)


def test_epsilon_loss_matches_hand_computation():
    sched = DDPMScheduler(num_train_timesteps=10)
    obj = DenoisingObjective(sched, "epsilon")
    x0 = torch.randn(4, 1, 4, 4)
    out = obj(Oracle(), x0, {}, generator=torch.Generator().manual_seed(0))
    expected = (0.5 * out.x_t - out.noise).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(out.loss, expected)
    assert out.loss.shape == (4,) and out.t.shape == (4,)
    a = sched.alphas_cumprod[out.t].view(-1, 1, 1, 1)
    torch.testing.assert_close(out.x_t, a.sqrt() * x0 + (1 - a).sqrt() * out.noise)


def test_same_generator_seed_gives_same_draws():
    obj = DenoisingObjective(DDPMScheduler(num_train_timesteps=10), "epsilon")
    x0 = torch.randn(3, 1, 4, 4)
    a = obj(Oracle(), x0, {}, generator=torch.Generator().manual_seed(7))
    b = obj(Oracle(), x0, {}, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a.loss, b.loss)
    torch.testing.assert_close(a.t, b.t)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_min_snr_weights_closed_form(prediction_type):
    sched = DDPMScheduler(num_train_timesteps=100)
    gamma = 5.0
    obj = DenoisingObjective(sched, prediction_type, snr_gamma=gamma)
    t = torch.arange(100)
    alpha = sched.alphas_cumprod.float()
    snr = alpha / (1 - alpha)
    expected = {
        "epsilon": torch.minimum(snr, torch.tensor(gamma)) / snr,
        "v_prediction": torch.minimum(snr, torch.tensor(gamma)) / (snr + 1),
        "sample": torch.minimum(snr, torch.tensor(gamma)),
    }[prediction_type]
    torch.testing.assert_close(obj.weights(t), expected)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_min_snr_weights_are_finite_at_zero_terminal_snr(prediction_type):
    """With `rescale_betas_zero_snr` SNR_T = 0; every weight stays finite there (the ε form min(1, γ/SNR) tends to 1,
    but ε-prediction itself is refused at a zero terminal SNR, below)."""
    sched = DDPMScheduler(num_train_timesteps=100, rescale_betas_zero_snr=True)
    assert sched.alphas_cumprod[-1] == 0
    obj = DenoisingObjective(sched, prediction_type, snr_gamma=5.0)
    weights = obj.weights(torch.arange(100))
    assert torch.isfinite(weights).all()
    assert weights[-1].item() == 0.0
    x0 = torch.randn(4, 1, 4, 4)
    out = obj(Oracle(), x0, {}, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss).all()


def test_epsilon_prediction_is_refused_at_zero_terminal_snr():
    sched = DDPMScheduler(num_train_timesteps=100, rescale_betas_zero_snr=True)
    with pytest.raises(ValueError, match="v_prediction"):
        DenoisingObjective(sched, "epsilon")


def test_stratified_timesteps_take_one_per_stratum():
    """B draws cover the B strata [iT/B, (i+1)T/B) exactly once each when B divides T (B = T: a permutation)."""
    gen = torch.Generator().manual_seed(0)
    for batch, steps in ((10, 10), (8, 1000), (5, 20)):
        for _ in range(20):
            t = sample_timesteps("stratified", batch, steps, gen, "cpu")
            assert t.dtype == torch.long and t.min() >= 0 and t.max() < steps
            strata = torch.div(t * batch, steps, rounding_mode="floor")
            assert sorted(strata.tolist()) == list(range(batch))


@pytest.mark.parametrize("kind", ["uniform", "stratified"])
def test_uniform_and_stratified_timesteps_are_marginally_uniform(kind):
    """Both draw each t with probability 1/T, so the loss is the same in expectation (chi-square, 9 dof)."""
    gen = torch.Generator().manual_seed(1)
    t = torch.cat([sample_timesteps(kind, 7, 10, gen, "cpu") for _ in range(3000)])
    counts = torch.bincount(t, minlength=10).double()
    expected = len(t) / 10
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 27.9  # the 0.999 quantile of χ²(9)


def test_logit_normal_timesteps_follow_the_sigmoid_of_a_normal():
    """t = ⌊T·sigmoid(n)⌋, n ~ N(0, 1): P(t < T/2) = 1/2 and P(t < T·sigmoid(1)) = Φ(1) ≈ 0.8413."""
    gen = torch.Generator().manual_seed(2)
    t = sample_timesteps("logit_normal", 200_000, 1000, gen, "cpu").double()
    assert abs(float((t < 500).double().mean()) - 0.5) < 0.005
    assert abs(float((t < 1000 * torch.sigmoid(torch.tensor(1.0))).double().mean()) - 0.8413) < 0.005
    assert abs(float((t < 1000 * torch.sigmoid(torch.tensor(-2.0))).double().mean()) - 0.0228) < 0.003


def test_objective_draws_timesteps_with_its_sampling_and_refuses_unknown_ones():
    sched = DDPMScheduler(num_train_timesteps=16)
    obj = DenoisingObjective(sched, "epsilon", timestep_sampling="stratified")
    out = obj(Oracle(), torch.randn(16, 1, 4, 4), {}, generator=torch.Generator().manual_seed(0))
    assert sorted(out.t.tolist()) == list(range(16))
    with pytest.raises(ValueError, match="unknown timestep sampling"):
        DenoisingObjective(sched, "epsilon", timestep_sampling="cosine")


def test_targets_for_sample_and_v_prediction():
    sched = DDPMScheduler(num_train_timesteps=10)
    x0, noise, t = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4), torch.tensor([2, 8])
    torch.testing.assert_close(DenoisingObjective(sched, "sample").target(x0, noise, t), x0)
    torch.testing.assert_close(
        DenoisingObjective(sched, "v_prediction").target(x0, noise, t), sched.get_velocity(x0, noise, t)
    )
    # Unweighted x₀ loss keeps the SNR weighting ᾱ/(1−ᾱ) (equal to the ε loss in expectation).
    alpha = sched.alphas_cumprod[t]
    torch.testing.assert_close(DenoisingObjective(sched, "sample").weights(t), alpha / (1 - alpha))
    torch.testing.assert_close(DenoisingObjective(sched, "epsilon").weights(t), torch.ones(2))
