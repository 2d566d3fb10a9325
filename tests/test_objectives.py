"""DenoisingObjective: targets, min-SNR-γ weights in closed form, per-sample shapes, determinism."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from continual_diffusers.models.denoiser import DenoiserOutput
from continual_diffusers.objectives import DenoisingObjective


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


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_min_snr_weights_are_finite_at_zero_terminal_snr(prediction_type):
    """With `rescale_betas_zero_snr` SNR_T = 0; the ε weight min(SNR, γ)/SNR tends to 1 there (not 0/0 = NaN)."""
    sched = DDPMScheduler(num_train_timesteps=100, rescale_betas_zero_snr=True)
    assert sched.alphas_cumprod[-1] == 0
    obj = DenoisingObjective(sched, prediction_type, snr_gamma=5.0)
    weights = obj.weights(torch.arange(100))
    assert torch.isfinite(weights).all()
    expected_last = {"epsilon": 1.0, "v_prediction": 0.0, "sample": 0.0}[prediction_type]
    assert weights[-1].item() == expected_last
    x0 = torch.randn(4, 1, 4, 4)
    out = obj(Oracle(), x0, {}, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss).all()


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
