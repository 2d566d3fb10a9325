"""Command-line layer: the only package that knows argparse. Entry scripts build their parsers from the typed
configs (continual_diffusers/config, `TrainConfig`, each strategy's config: `utils.options` generates the flags)
and turn the parsed flags into those configs here, once (`ddpm_options`, `ldm_options`), then into library
objects. Flag names follow the earlier Continual-Diffusers where they exist, so users' scripts keep working."""

from .base import RunOptions, new_parser
from .evaluation import build_end_of_task_eval, check_evaluation
from .sampling import add_sampler_args, check_sampler_ranges
from .strategy import add_strategy_args, build_strategy
from .training import (
    build_ddpm,
    ddpm_options,
    ddpm_parser,
    ddpm_strategy,
    prediction_type,
    tracker_config,
    train_config,
)

__all__ = [
    "RunOptions",
    "add_sampler_args",
    "add_strategy_args",
    "build_ddpm",
    "build_end_of_task_eval",
    "build_strategy",
    "check_evaluation",
    "check_sampler_ranges",
    "ddpm_options",
    "ddpm_parser",
    "ddpm_strategy",
    "new_parser",
    "prediction_type",
    "tracker_config",
    "train_config",
]
