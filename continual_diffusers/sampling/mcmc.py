"""MCMC kernels over an unnormalised target: pure functions with one shared signature and per-chain accept/reject.

Every kernel is `kernel(target, x, params, generator) -> KernelResult` where
`target(x) -> (logp (B,) | None, grad (B, ...))` returns log p̃(x) and ∇ₓ log p̃(x) per chain. Score-only targets
return `logp=None`; they can drive the unadjusted kernels (ULA, UHA) but not the Metropolis-corrected ones (MALA,
HMC). Kernels never modify `x` or any tensor they were given, draw every random number from `generator`, and accept
or reject each chain on its own (the chains of a batch are independent Markov chains).

Maths (Du et al. 2023, "Reduce, Reuse, Recycle", §4 and App. B; Neal 2011, "MCMC using Hamiltonian dynamics"):
  * ULA:  x ← x + η∇log p̃(x) + √(2η) z.
  * MALA: the ULA move as a proposal, accepted with min(1, p̃(x′)q(x|x′) / p̃(x)q(x′|x)) where
          log q(a|b) = −‖a − b − η∇log p̃(b)‖² / (4η)  (the proposal variance is 2η).
  * UHA:  momentum v ~ N(0, m²) per call; per inner step a partial refresh v ← γv + √(1−γ²) m ξ, then L leapfrog
          steps of size ε with kinetic energy ½‖v‖²/m²; no correction.
  * HMC:  the UHA proposal with a Metropolis test on the joint log p̃(x) − ½‖v‖²/m². On reject x is kept and the
          refreshed momentum is negated (Horowitz 1991), which keeps π(x)N(v; 0, m²) invariant for every γ.
          (The JAX reference keeps v′ un-negated; that is only exact for γ = 0.)
Gradient evaluations: ULA K; MALA 1 + K; UHA / HMC 1 + K·L, i.e. exactly L per inner step (the gradient at the
end of one trajectory is reused at the start of the next).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

from ..utils import bounds as b

Target = Callable[[torch.Tensor], tuple[torch.Tensor | None, torch.Tensor]]
KernelName = Literal["ULA", "MALA", "UHA", "CHA"]


@dataclass(frozen=True)
class KernelParams:
    """Kernel knobs. `step_size` is η (ULA/MALA) or the leapfrog ε (UHA/HMC); `mass` is m (a scalar, or a tensor
    broadcastable to x: the square root of the diagonal mass matrix)."""

    step_size: float
    num_steps: int = 1  # K inner steps per call ("samples per step")
    num_leapfrog_steps: int = 3  # L (UHA/HMC)
    damping: float = 0.9  # γ, momentum kept per refresh (UHA/HMC); 0 = full refresh
    mass: float | torch.Tensor = 1.0  # m (UHA/HMC)

    def __post_init__(self):
        """A NaN or infinite step size (or damping) would make every chain NaN: refused (`UserInputError`)."""
        b.POSITIVE.check("step_size", self.step_size)
        b.UNIT.check("damping", self.damping)


class KernelResult(NamedTuple):
    x: torch.Tensor  # (B, ...) new states
    momentum: torch.Tensor | None  # (B, ...) final momentum (UHA/HMC), else None
    acceptance: torch.Tensor  # (B,) fraction of the K proposals accepted (1 for unadjusted kernels)
    num_grad_evals: int  # calls of `target` made by this kernel call


def _sq_norm(a: torch.Tensor) -> torch.Tensor:
    return a.flatten(1).pow(2).sum(1)


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) → (B, 1, …, 1) so a per-chain mask broadcasts over a state."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


def _randn(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def _metropolis(log_alpha: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Per-chain accept mask: log u < log α with one u ~ U(0, 1) per chain (NaN → reject)."""
    u = torch.rand(log_alpha.shape, generator=generator, device=log_alpha.device, dtype=log_alpha.dtype)
    return torch.log(u) < log_alpha


def _eval_with_logp(target: Target, x: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    logp, grad = target(x)
    if logp is None:
        raise ValueError(f"{name} needs log p̃(x): the target returned logp=None (a score-only model); use ULA or UHA")
    return logp, grad


def ula(target: Target, x: torch.Tensor, params: KernelParams, generator: torch.Generator | None) -> KernelResult:
    """Unadjusted Langevin algorithm (Roberts & Tweedie 1996). x: (B, ...)."""
    eta = params.step_size
    for _ in range(params.num_steps):
        # 1. drift from the score at the current state
        _, grad = target(x)
        # 2. x ← x + η∇log p̃(x) + √(2η) z
        x = x + eta * grad + math.sqrt(2 * eta) * _randn(x, generator)
    return KernelResult(x, None, torch.ones(x.shape[0], device=x.device), params.num_steps)


def mala(target: Target, x: torch.Tensor, params: KernelParams, generator: torch.Generator | None) -> KernelResult:
    """Metropolis-adjusted Langevin algorithm (Roberts & Tweedie 1996), per-chain acceptance. x: (B, ...)."""
    eta = params.step_size
    logp, grad = _eval_with_logp(target, x, "MALA")
    accepted = torch.zeros(x.shape[0], device=x.device)
    for _ in range(params.num_steps):
        # 1. Langevin proposal x′ = x + η∇log p̃(x) + √(2η) z
        prop = x + eta * grad + math.sqrt(2 * eta) * _randn(x, generator)
        logp_prop, grad_prop = _eval_with_logp(target, prop, "MALA")
        # 2. log q(a|b) = −‖a − b − η∇log p̃(b)‖² / (4η): forward x → x′ and reverse x′ → x
        log_q_fwd = -_sq_norm(prop - x - eta * grad) / (4 * eta)
        log_q_rev = -_sq_norm(x - prop - eta * grad_prop) / (4 * eta)
        # 3. Metropolis-Hastings test, one coin per chain
        acc = _metropolis(logp_prop - logp + log_q_rev - log_q_fwd, generator)
        x, grad = torch.where(_rows(acc, x), prop, x), torch.where(_rows(acc, grad), grad_prop, grad)
        logp = torch.where(acc, logp_prop, logp)
        accepted = accepted + acc.float()
    return KernelResult(x, None, accepted / params.num_steps, 1 + params.num_steps)


def leapfrog(
    target: Target,
    x: torch.Tensor,
    v: torch.Tensor,
    grad: torch.Tensor,
    step_size: float,
    mass: float | torch.Tensor,
    num_steps: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """`num_steps` leapfrog steps for H(x, v) = −log p̃(x) + ½‖v‖²/m² (Neal 2011, eq. 5.18–5.20).

    Args:
        x, v, grad: (B, ...) position, momentum and ∇log p̃(x); not modified.
    Returns:
        (x, v, logp (B,) | None, grad) at the end; exactly `num_steps` target evaluations.
    """
    logp = None
    for _ in range(num_steps):
        # 1. half step in momentum, 2. full step in position, 3. half step in momentum
        v = v + 0.5 * step_size * grad
        x = x + step_size * v / mass**2
        logp, grad = target(x)
        v = v + 0.5 * step_size * grad
    return x, v, logp, grad


def _hamiltonian(
    target: Target, x: torch.Tensor, params: KernelParams, generator: torch.Generator | None, correct: bool
) -> KernelResult:
    m, gamma, eps = params.mass, params.damping, params.step_size
    logp, grad = _eval_with_logp(target, x, "HMC") if correct else target(x)
    v = m * _randn(x, generator)  # v ~ N(0, m²), fresh at every call (every noise level)
    accepted = torch.zeros(x.shape[0], device=x.device)
    for _ in range(params.num_steps):
        # 1. damped partial momentum refresh
        v = gamma * v + math.sqrt(1 - gamma**2) * m * _randn(x, generator)
        # 2. L leapfrog steps from (x, v)
        x_new, v_new, logp_new, grad_new = leapfrog(target, x, v, grad, eps, m, params.num_leapfrog_steps)
        if not correct:
            x, v, logp, grad = x_new, v_new, logp_new, grad_new
            accepted = accepted + 1
            continue
        # 3. Metropolis test on the joint log density log p̃(x) − ½‖v‖²/m², one coin per chain
        kinetic, kinetic_new = 0.5 * _sq_norm(v / m), 0.5 * _sq_norm(v_new / m)
        acc = _metropolis((logp_new - kinetic_new) - (logp - kinetic), generator)
        # 4. accept: (x′, v′); reject: keep x, negate the momentum
        rows = _rows(acc, x)
        x, v, grad = torch.where(rows, x_new, x), torch.where(rows, v_new, -v), torch.where(rows, grad_new, grad)
        logp = torch.where(acc, logp_new, logp)
        accepted = accepted + acc.float()
    return KernelResult(x, v, accepted / params.num_steps, 1 + params.num_steps * params.num_leapfrog_steps)


def uha(target: Target, x: torch.Tensor, params: KernelParams, generator: torch.Generator | None) -> KernelResult:
    """Unadjusted (underdamped) Hamiltonian annealing: partial refresh + leapfrog, no correction. x: (B, ...)."""
    return _hamiltonian(target, x, params, generator, correct=False)


def hmc(target: Target, x: torch.Tensor, params: KernelParams, generator: torch.Generator | None) -> KernelResult:
    """Metropolis-corrected UHA (generalised HMC with partial momentum refresh; "CHA"). x: (B, ...)."""
    return _hamiltonian(target, x, params, generator, correct=True)


KERNELS: dict[str, Callable[..., KernelResult]] = {"ULA": ula, "MALA": mala, "UHA": uha, "CHA": hmc}
NEEDS_LOG_PROB = frozenset({"MALA", "CHA"})
