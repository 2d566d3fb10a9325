"""One typed configuration per component of a run, from which the command-line flags are generated.

Every flag of main_ddpm.py, main_ldm.py and evaluate.py is a field of one of these dataclasses (or of a strategy's
config, next to the strategy: `ReplayConfig` in strategies/replay.py, ...; or of `TrainConfig`), declared with
`utils.options.option`: name (= the field, plus upstream aliases), help, default, choices and bounds in one place.
A config checks itself on construction, so Python and the command line refuse the same values with the same
message; cli/ adds the groups to a parser (`utils.options.add_options`) and builds the configs from the parsed
flags (`utils.options.from_args`). Why a small generator of our own and not a library: see utils/options.py.
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
from .sampling import CompositionFlags, LabelsConfig, MCMCFlags, SamplingConfig, SlotModeConfig

__all__ = [
    "CompositionFlags",
    "DataConfig",
    "EvaluationConfig",
    "HubConfig",
    "LDMConfig",
    "LabelsConfig",
    "LaunchConfig",
    "MCMCFlags",
    "ModelConfig",
    "ObjectiveConfig",
    "SamplingConfig",
    "SlotConfig",
    "SlotModeConfig",
    "check_zero_snr_prediction",
]


def __getattr__(name: str):
    """`RunConfig`: the earlier name of `LaunchConfig` (deprecated; it read like `cli.RunOptions`, the whole run)."""
    if name == "RunConfig":
        import warnings

        warnings.warn("continual_diffusers.config.RunConfig is deprecated: use LaunchConfig", DeprecationWarning, 2)
        return LaunchConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
