"""Sampling: ancestral loops over diffusers schedulers, MCMC kernels, annealed MCMC and composition.

Contracts: a denoise function is `(x (B, C, H, W), t (B,)) -> DenoiserOutput(ε̂, E | None)` with its conditions
bound; an MCMC target is `log_prob_and_grad(x) -> (logp (B,) | None, grad (B, ...))`; kernels are pure functions
`kernel(target, x, params, generator) -> KernelResult`.
"""

from .analytic import GaussianMixtureDenoiser
from .ancestral import SCHEDULERS, make_sampling_scheduler, sample_ancestral
from .annealed import AnnealedMCMC, MCMCOptions, diffusion_target
from .composition import check_composition, combine_mixture, combine_product, compose, compose_fns, conditioned
from .generate import CompositionOptions, SamplerOptions, generate, generate_samples
from .mcmc import KERNELS, KernelParams, KernelResult, hmc, leapfrog, mala, uha, ula
from .parameterisation import epsilon_from_prediction, prediction_from_epsilon

__all__ = [
    "KERNELS",
    "SCHEDULERS",
    "AnnealedMCMC",
    "CompositionOptions",
    "GaussianMixtureDenoiser",
    "KernelParams",
    "KernelResult",
    "MCMCOptions",
    "SamplerOptions",
    "check_composition",
    "combine_mixture",
    "combine_product",
    "compose",
    "compose_fns",
    "conditioned",
    "diffusion_target",
    "epsilon_from_prediction",
    "generate",
    "generate_samples",
    "hmc",
    "leapfrog",
    "make_sampling_scheduler",
    "mala",
    "prediction_from_epsilon",
    "sample_ancestral",
    "uha",
    "ula",
]

# Earlier names → current names, still importable with a DeprecationWarning (the library's sampler objects are
# "*Options"; the command line's flag groups, in config/, "*Config").
RENAMED = {"MCMCConfig": "MCMCOptions"}  # deprecated alias


def __getattr__(name: str):
    """The earlier names of `RENAMED`, deprecated."""
    if name in RENAMED:
        import warnings

        new = RENAMED[name]
        warnings.warn(f"continual_diffusers.sampling.{name} is deprecated: use {new}", DeprecationWarning, 2)
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
