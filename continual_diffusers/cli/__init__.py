"""Command-line layer: the entry scripts' parsers, built from the typed configs (continual_diffusers/config,
`TrainConfig`, each strategy's and conditioning kind's options: `utils.options` generates the flags), the parsed
flags turned into those configs once (`ddpm_options`, `ldm_options`: a `RunOptions`), then into library objects (a
`RunParts`), and the training launcher. Nothing below this package imports it
(docs/architecture-and-extending.md). Flag names follow the earlier Continual-Diffusers where they exist, so users'
scripts keep working."""

from .base import RunOptions, RunParts, new_parser
from .evaluation import build_end_of_task_eval, check_evaluation
from .sampling import add_sampler_args, check_sampler_ranges
from .strategy import add_strategy_args, build_strategy
from .training import (
    build_ddpm,
    build_ddpm_strategy,
    ddpm_options,
    ddpm_parser,
    prediction_type,
    tracker_config,
    train_config,
)

__all__ = [
    "RunOptions",
    "RunParts",
    "add_sampler_args",
    "add_strategy_args",
    "build_ddpm",
    "build_ddpm_strategy",
    "build_end_of_task_eval",
    "build_strategy",
    "check_evaluation",
    "check_sampler_ranges",
    "ddpm_options",
    "ddpm_parser",
    "new_parser",
    "prediction_type",
    "tracker_config",
    "train_config",
]
