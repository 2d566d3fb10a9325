"""Synaptic intelligence: the path integral ω = −Σ g·Δθ uses the unregularised gradient (also under gradient
accumulation), Ω = ω / (Δθ² + ξ), the penalty c·Σ Ω (θ − θ*)², hooks are removed after a task, energy models'
double backward is counted once, and a state round trip mid-task continues exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from continual_diffusers.models.denoiser import make_denoiser
from continual_diffusers.models.unet import UNetSpec, build_unet
from continual_diffusers.strategies import SynapticIntelligence
from continual_diffusers.utils.errors import UserInputError

LR = 0.1


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))


def _data_loss(model: nn.Module, step: int, micro: int, params: dict | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 * step + micro)
    x, y = torch.randn(8, 3, generator=g), torch.randn(8, 1, generator=g)
    out = model(x) if params is None else torch.func.functional_call(model, params, (x,))
    return (out - y).pow(2).mean()


def _train(model, si, steps: range, ga: int = 1, task_id: int = 1):
    """The trainer's order: before_task; per step, GA micro-batches of (loss + penalty)/GA backward → SGD step →
    zero_grad → after_optimizer_step. Returns the unregularised path integral computed by hand."""
    si.before_task(model, task_id)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for step in steps:
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        unregularised = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
        for micro in range(ga):
            # The reference gradient goes through detached copies: no hooks fire for it.
            detached = {n: p.detach() for n, p in model.named_parameters()}
            reference = torch.func.grad(lambda p, s=step, m=micro: _data_loss(model, s, m, p))(detached)
            for n, g in reference.items():
                unregularised[n] += g / ga
            loss = _data_loss(model, step, micro)
            penalty = si.penalty(model, None)
            ((loss + (penalty if penalty is not None else 0.0)) / ga).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        si.after_optimizer_step(model)
        for n, p in model.named_parameters():
            expected[n] -= unregularised[n] * (p.detach() - before[n])
    return expected


@pytest.mark.parametrize("ga", [1, 3])
def test_path_integral_uses_the_unregularised_gradient(ga):
    model, si = _model(), SynapticIntelligence(lambda_=5.0, epsilon=0.1)
    expected = _train(model, si, range(4), ga)
    for n in expected:  # plain SGD: −g·Δθ = lr·g², so ω ≥ 0
        torch.testing.assert_close(si.omega[n], expected[n])
        assert (si.omega[n] >= 0).all()
    si.after_task(model, None)
    expected = _train(model, si, range(4, 8), ga, task_id=2)  # now the penalty is in the backward
    for n in expected:
        torch.testing.assert_close(si.omega[n], expected[n], rtol=1e-5, atol=1e-7)


def test_importance_anchor_and_penalty():
    model, si = _model(), SynapticIntelligence(lambda_=2.0, epsilon=0.5)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert si.penalty(model, None) is None
    _train(model, si, range(3))
    omega = {n: w.clone() for n, w in si.omega.items()}
    si.after_task(model, None)
    for n, p in model.named_parameters():
        torch.testing.assert_close(si.importance[n], omega[n] / ((p.detach() - start[n]) ** 2 + 0.5))
        assert torch.equal(si.anchor[n], p.detach())
    penalty = si.penalty(model, None)
    assert penalty.item() == 0
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3)
    penalty = si.penalty(model, None)
    grads = torch.autograd.grad(penalty, list(model.parameters()))
    for (n, p), g in zip(model.named_parameters(), grads):
        torch.testing.assert_close(g, 2 * 2.0 * si.importance[n] * (p.detach() - si.anchor[n]))


def test_hooks_are_removed_after_the_task():
    model, si = _model(), SynapticIntelligence(1.0)
    _train(model, si, range(2))
    si.after_task(model, None)
    _data_loss(model, 0, 0).backward()
    assert si._grads == {} and si._hooks == []


def test_energy_model_double_backward_is_counted_once():
    unet = build_unet(
        UNetSpec(resolution=8, in_channels=3, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4)
    )
    model, si = make_denoiser(unet, "dae").train(), SynapticIntelligence(1.0)
    si.before_task(model, 1)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([1, 5])
    (model(x, t).prediction - x).pow(2).mean().backward()  # ε̂ = ∇ₓE inside: an inner autograd.grad
    for n, p in model.named_parameters():
        torch.testing.assert_close(si._grads[n], p.grad)


def test_state_round_trip_mid_task_continues_exactly():
    straight_model, straight = _model(), SynapticIntelligence(1.0)
    _train(straight_model, straight, range(2))
    straight.after_task(straight_model, None)
    _train(straight_model, straight, range(2, 6), task_id=2)

    model, si = _model(), SynapticIntelligence(1.0)
    _train(model, si, range(2))
    si.after_task(model, None)
    _train(model, si, range(2, 4), task_id=2)
    state, weights = si.state_dict(), {k: v.clone() for k, v in model.state_dict().items()}
    resumed_model, resumed = _model(), SynapticIntelligence(1.0)
    resumed_model.load_state_dict(weights)
    resumed.load_state_dict(state)
    assert resumed.start_task == 2
    _train(resumed_model, resumed, range(4, 6), task_id=2)
    for n in straight.omega:
        assert torch.equal(straight.omega[n], resumed.omega[n]) and torch.equal(straight.start[n], resumed.start[n])
    with pytest.raises(UserInputError, match="no SI state"):
        SynapticIntelligence(1.0).load_state_dict({})


def test_a_skipped_step_leaves_no_gradient_behind():
    """--on_nonfinite skip: the trainer calls `discard_step` instead of `after_optimizer_step`; the skipped step's
    hooked gradients must not be added into the next step's ω (that step would count twice)."""
    reference_model, reference = _model(), SynapticIntelligence(lambda_=5.0, epsilon=0.1)
    _train(reference_model, reference, range(3))
    model, si = _model(), SynapticIntelligence(lambda_=5.0, epsilon=0.1)
    si.before_task(model, 1)
    _data_loss(model, 99, 0).backward()  # the skipped step: gradients hooked, no optimizer step
    model.zero_grad(set_to_none=True)
    si.discard_step(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    for step in range(3):
        _data_loss(model, step, 0).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        si.after_optimizer_step(model)
    for n in reference.omega:
        torch.testing.assert_close(si.omega[n], reference.omega[n])
