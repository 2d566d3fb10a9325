"""One typed configuration per component of a run, from which the command-line flags are generated.

Every flag of main_ddpm.py, main_ldm.py and evaluate.py is a field of one of these dataclasses (or of a strategy's
config, next to the strategy: `ReplayConfig` in strategies/replay.py, ...; or of `TrainConfig`), declared with
`utils.options.option`: name (= the field, plus upstream aliases), help, default, choices and bounds in one place.
A config checks itself on construction, so Python and the command line refuse the same values with the same
message; cli/ adds the groups to a parser (`utils.options.add_options`) and builds the configs from the parsed
flags (`utils.options.from_args`). Why a small generator of our own and not a library: see utils/options.py.

Names: a flag group here is a `*Config` (`SamplingConfig`, `AnnealedMCMCConfig`, `CompositionConfig`); the
library's objects it is turned into, once the model is known, are `*Options` (`SamplerOptions`, `MCMCOptions`,
`CompositionOptions`, in sampling/).
"""

from ..models.conditioning import SlotConfig
from .run import (
    DataConfig,
    EvaluationConfig,
    HubConfig,
    LaunchConfig,
    LDMConfig,
    ModelConfig,
    ObjectiveConfig,
    check_zero_snr_prediction,
)
from .sampling import AnnealedMCMCConfig, CompositionConfig, LabelsConfig, SamplingConfig, SlotModeConfig

__all__ = [
    "CompositionConfig",
    "DataConfig",
    "EvaluationConfig",
    "HubConfig",
    "LDMConfig",
    "LabelsConfig",
    "LaunchConfig",
    "AnnealedMCMCConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "SamplingConfig",
    "SlotConfig",
    "SlotModeConfig",
    "check_zero_snr_prediction",
]


# Earlier names → current names, still importable with a DeprecationWarning. RunConfig read like `cli.RunOptions`
# (the whole run); the flag groups of annealed MCMC and composition were "*Flags" beside the library's MCMC and
# composition objects.
RENAMED = {
    "RunConfig": "LaunchConfig",  # deprecated alias
    "MCMCFlags": "AnnealedMCMCConfig",  # deprecated alias
    "CompositionFlags": "CompositionConfig",  # deprecated alias
}


def __getattr__(name: str):
    """The earlier names of `RENAMED`, deprecated."""
    if name in RENAMED:
        import warnings

        new = RENAMED[name]
        warnings.warn(f"continual_diffusers.config.{name} is deprecated: use {new}", DeprecationWarning, 2)
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
