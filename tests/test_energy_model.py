"""EnergyModel: ε̂ = ∇ₓE exactly (autograd and closed forms), no mutation of inputs, double backward works."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from continual_diffusers.models.denoiser import EnergyModel, ScoreModel
from continual_diffusers.models.unet import UNetSpec, build_unet


class LinearUNet(nn.Module):
    """f(x) = W·vec(x), shaped like x: a UNet stand-in whose Jacobian is exactly W."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim, dim, dtype=torch.float64) / dim**0.5)

    def forward(self, x, t, **cond):
        out = (x.flatten(1) @ self.weight.T).view_as(x)
        return type("Out", (), {"sample": out})()


def tiny_unet():
    torch.manual_seed(0)
    spec = UNetSpec(8, 3, "class", num_classes=4, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4)
    return build_unet(spec)


@pytest.mark.parametrize("energy_type", ["l2", "dae"])
def test_eps_is_autograd_gradient_of_energy(energy_type):
    model = EnergyModel(tiny_unet(), energy_type).eval()
    x, t, y = torch.randn(3, 3, 8, 8), torch.tensor([1, 5, 9]), torch.tensor([0, 1, 3])
    eps, energy, _ = model(x, t, class_labels=y)
    x_ref = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.energy(x_ref, t, class_labels=y).sum(), x_ref)
    torch.testing.assert_close(eps, grad)
    assert energy.shape == (3,)
    torch.testing.assert_close(energy, model.energy(x, t, class_labels=y).detach())


def test_closed_forms_on_a_linear_model():
    torch.manual_seed(0)
    dim, x = 12, torch.randn(4, 3, 2, 2, dtype=torch.float64)
    unet = LinearUNet(dim)
    w, v = unet.weight.detach(), x.flatten(1)
    eps_l2 = EnergyModel(unet, "l2").eval().eps(x, torch.zeros(4))
    torch.testing.assert_close(eps_l2.flatten(1), v @ w.T @ w)  # Jᵀ f with f = Wx
    eps_dae = EnergyModel(unet, "dae").eval().eps(x, torch.zeros(4))
    identity = torch.eye(dim, dtype=torch.float64)
    torch.testing.assert_close(eps_dae.flatten(1), (v - v @ w.T) @ (identity - w))  # (I − J)ᵀ (x − f)


def test_caller_tensor_is_not_mutated():
    model = EnergyModel(tiny_unet(), "dae").train()
    x = torch.randn(2, 3, 8, 8)
    before = x.clone()
    model(x, torch.tensor([1, 2]), class_labels=torch.tensor([0, 1]))
    assert not x.requires_grad and x.grad is None
    torch.testing.assert_close(x, before)


def test_double_backward_reaches_parameters_through_attention():
    model = EnergyModel(tiny_unet(), "l2").train()  # tiny_unet has an attention block at the lowest level
    eps = model(torch.randn(2, 3, 8, 8), torch.tensor([3, 7]), class_labels=torch.tensor([0, 2])).prediction
    assert eps.requires_grad
    (eps - torch.randn_like(eps)).pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_eval_mode_works_under_no_grad_and_detaches():
    model = EnergyModel(tiny_unet(), "dae").eval()
    with torch.no_grad():
        eps, energy, _ = model(torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), class_labels=torch.tensor([0, 1]))
    assert not eps.requires_grad and not energy.requires_grad and torch.isfinite(eps).all()


def test_score_model_returns_unet_output():
    unet = tiny_unet()
    x, t, y = torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), torch.tensor([0, 1])
    out = ScoreModel(unet)(x, t, class_labels=y)
    torch.testing.assert_close(out.prediction, unet(x, t, class_labels=y).sample)
    assert out.energy is None


def test_unknown_energy_type_is_refused():
    with pytest.raises(ValueError, match="energy_type"):
        EnergyModel(tiny_unet(), "l1")
