"""EWC: the per-sample Fisher matches a closed form (linear-Gaussian denoiser), vmap equals the single-sample loop
(score and energy), autocast/grad state do not change it; the penalty is 0 at θ* with gradient λ·F·(θ − θ*);
separate and online modes; DDP names; state round trip."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tasks
from diffusers import DDPMScheduler
from torch import nn

from continual_diffusers.data import ImageTransform, TaskDataset
from continual_diffusers.models.conditioning import ClassConditioning
from continual_diffusers.models.denoiser import DenoiserOutput, make_denoiser
from continual_diffusers.models.unet import UNetSpec, build_unet
from continual_diffusers.objectives import DenoisingObjective
from continual_diffusers.strategies import EWC, TaskContext, estimate_fisher
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.seed import make_generator

NUM_STEPS = 10


class LinearDenoiser(nn.Module):
    """ε̂ = W x_t on flattened images (D = C·H·W)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(0.3 * torch.randn(dim, dim, generator=torch.Generator().manual_seed(1)))

    def forward(self, x, t, **cond):
        return DenoiserOutput((x.flatten(1) @ self.weight.T).view_as(x), None)


class GaussianData:
    """x₀ ~ N(0, I) of shape (1, 2, 2): `len()` and `batch(indices, generator)` like a TaskDataset."""

    def __len__(self):
        return 10**6

    def batch(self, indices, generator=None):
        return {"images": torch.randn(len(indices), 1, 2, 2, generator=generator)}


def _objective(prediction_type="epsilon"):
    return DenoisingObjective(DDPMScheduler(num_train_timesteps=NUM_STEPS), prediction_type)


def _context(dataset, objective, encode=lambda batch, device: {}, task_id=1):
    return TaskContext(task_id, dataset, objective, encode, torch.device("cpu"), seed=0)


def closed_form_fisher(weight: torch.Tensor, objective: DenoisingObjective) -> torch.Tensor:
    """E[(∂ℓ/∂W_ab)²] for ℓ = (1/D)‖W x_t − ε‖², x₀ ~ N(0, I), t ~ U{0..T−1}, one draw per sample.

    x_t ~ N(0, I) and Cov(ε, x_t) = s·I with s = √(1 − ᾱ_t). With r = W x_t − ε, ∂ℓ/∂W_ab = (2/D) r_a x_b and, by
    Isserlis, E[r_a² x_b²] = E[r_a²] E[x_b²] + 2 E[r_a x_b]², where E[r rᵀ] = WWᵀ − s(W + Wᵀ) + I, E[r xᵀ] = W − sI.
    """
    dim, eye = weight.shape[0], torch.eye(weight.shape[0], dtype=torch.float64)
    w = weight.double()
    total = torch.zeros_like(w)
    for s in (1 - objective.scheduler.alphas_cumprod.double()).sqrt():
        cov_r = w @ w.T - s * (w + w.T) + eye
        cross = w - s * eye
        total += 4 / dim**2 * (cov_r.diagonal()[:, None] + 2 * cross**2)
    return (total / len(objective.scheduler.alphas_cumprod)).float()


def test_fisher_matches_the_linear_gaussian_closed_form():
    model, objective = LinearDenoiser(4), _objective()
    fisher = estimate_fisher(
        model,
        GaussianData(),
        objective,
        lambda b, d: {},
        torch.device("cpu"),
        make_generator(0, "fisher"),
        num_samples=20000,
        num_timesteps=1,
        batch_size=5000,
    )
    exact = closed_form_fisher(model.weight.detach(), objective)
    relative = (fisher["weight"] - exact).norm() / exact.norm()
    assert relative < 0.04, relative  # Monte-Carlo error of 20000 samples: ≈ 0.016
    torch.testing.assert_close(fisher["weight"], exact, rtol=0.08, atol=0)


def _tiny_unet_setup(energy: bool):
    unet = build_unet(
        UNetSpec(
            resolution=8,
            in_channels=3,
            conditioning="class",
            num_classes=4,
            null_class=True,
            block_out_channels=(8, 16),
            layers_per_block=1,
            norm_num_groups=4,
        )
    )
    model = make_denoiser(unet, "dae" if energy else None)
    dataset = TaskDataset(make_tasks("class")[1], ImageTransform(8, random_flip=True))
    conditioning = ClassConditioning(num_classes=4, null_class=True)
    return model, dataset, lambda batch, device: conditioning.encode(batch["labels"], device)


@pytest.mark.parametrize("energy", [False, True], ids=["score", "energy"])
def test_vectorised_fisher_equals_the_single_sample_loop(energy):
    model, dataset, encode = _tiny_unet_setup(energy)
    common = dict(num_samples=6, num_timesteps=2, batch_size=4)
    fast = estimate_fisher(model, dataset, _objective(), encode, torch.device("cpu"), make_generator(0), **common)
    slow = estimate_fisher(
        model, dataset, _objective(), encode, torch.device("cpu"), make_generator(0), vectorize=False, **common
    )
    assert fast.keys() == slow.keys() and len(fast) == len(list(model.parameters()))
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-4, atol=1e-10)
    assert sum(f.sum() for f in fast.values()) > 0 and model.training  # mode restored


def test_fisher_ignores_autocast_and_existing_gradients():
    model, dataset, encode = _tiny_unet_setup(energy=False)
    args = (model, dataset, _objective(), encode, torch.device("cpu"))
    reference = estimate_fisher(*args, make_generator(0), num_samples=4, num_timesteps=1)
    for p in model.parameters():
        p.grad = torch.full_like(p, 3.0)  # a half-accumulated step must neither leak in nor be touched
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = estimate_fisher(*args, make_generator(0), num_samples=4, num_timesteps=1)
    assert all(torch.equal(reference[n], under_autocast[n]) for n in reference)
    assert all(torch.equal(p.grad, torch.full_like(p, 3.0)) for p in model.parameters())


def test_fisher_divides_by_the_true_sample_count():
    model, dataset, encode = _tiny_unet_setup(energy=False)
    args = (model, dataset, _objective(), encode, torch.device("cpu"))
    capped = estimate_fisher(*args, make_generator(0), num_samples=1000, num_timesteps=1, batch_size=3)
    exact = estimate_fisher(*args, make_generator(0), num_samples=len(dataset), num_timesteps=1, batch_size=3)
    assert all(torch.allclose(capped[n], exact[n]) for n in capped)


def _ewc_after_tasks(mode: str, num_tasks: int, lambda_=2.0, gamma=0.5):
    model, objective = LinearDenoiser(4), _objective()
    ewc = EWC(lambda_, mode, gamma, num_samples=64, num_timesteps=2, batch_size=32)
    fishers, anchors = [], []
    for task_id in range(1, num_tasks + 1):
        with torch.no_grad():
            model.weight.add_(0.1 * task_id)
        ewc.after_task(model, _context(GaussianData(), objective, task_id=task_id))
        generator = make_generator(0, "ewc_fisher", task_id)
        fishers.append(
            estimate_fisher(
                model,
                GaussianData(),
                objective,
                lambda b, d: {},
                torch.device("cpu"),
                generator,
                num_samples=64,
                num_timesteps=2,
                batch_size=32,
            )["weight"]
        )
        anchors.append(model.weight.detach().clone())
    return model, ewc, fishers, anchors


def test_penalty_is_zero_at_the_anchor_with_gradient_lambda_f_delta():
    model, ewc, (fisher,), (anchor,) = _ewc_after_tasks("separate", 1)
    penalty = ewc.penalty(model, None)
    (grad,) = torch.autograd.grad(penalty, model.weight)
    assert penalty.item() == 0 and torch.equal(grad, torch.zeros_like(grad))
    with torch.no_grad():
        model.weight.add_(torch.randn(4, 4, generator=torch.Generator().manual_seed(5)))
    penalty = ewc.penalty(model, None)
    (grad,) = torch.autograd.grad(penalty, model.weight)
    delta = model.weight.detach() - anchor
    torch.testing.assert_close(penalty, 0.5 * 2.0 * (fisher * delta**2).sum())
    torch.testing.assert_close(grad, 2.0 * fisher * delta)


def test_separate_mode_keeps_one_term_per_task_and_online_mode_decays():
    model, ewc, fishers, anchors = _ewc_after_tasks("separate", 2)
    assert list(ewc.terms) == ["1", "2"]
    expected = sum(0.5 * 2.0 * (f * (model.weight - a) ** 2).sum() for f, a in zip(fishers, anchors))
    torch.testing.assert_close(ewc.penalty(model, None), expected)
    model, ewc, fishers, anchors = _ewc_after_tasks("online", 2)
    assert list(ewc.terms) == ["online"]
    fisher, anchor = ewc.terms["online"]
    torch.testing.assert_close(fisher["weight"], 0.5 * fishers[0] + fishers[1])  # F̃ = γ·F₁ + F₂
    assert torch.equal(anchor["weight"], anchors[1])


def test_penalty_strips_the_ddp_module_prefix_and_is_none_before_any_task():
    model, ewc, _, _ = _ewc_after_tasks("separate", 1)
    assert EWC(1.0).penalty(model, None) is None
    wrapped = nn.Module()
    wrapped.module = model  # named_parameters() → "module.weight", as under DistributedDataParallel
    with torch.no_grad():
        model.weight.add_(1.0)
    torch.testing.assert_close(ewc.penalty(wrapped, None), ewc.penalty(model, None))


def test_state_round_trip_and_mode_mismatch():
    model, ewc, _, _ = _ewc_after_tasks("separate", 2)
    state = ewc.state_dict()
    assert state["slots"] == ["1", "2"] and set(state) >= {"fisher.1.weight", "anchor.2.weight"}
    restored = EWC(2.0, "separate")
    restored.load_state_dict({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()})
    torch.testing.assert_close(restored.penalty(model, None), ewc.penalty(model, None))
    with pytest.raises(UserInputError, match="no EWC state for mode 'online'"):
        EWC(2.0, "online").load_state_dict(state)
