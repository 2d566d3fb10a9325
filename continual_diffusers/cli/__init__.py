"""Command-line layer: the only package that knows argparse. Entry scripts build parsers from these groups and
turn the Namespace into typed library objects here, once. Flag names follow the earlier Continual-Diffusers where
they exist, so users' scripts keep working."""

from .base import new_parser
from .evaluation import add_evaluation_args, build_end_of_task_eval, check_evaluation
from .sampling import add_sampler_args, check_sampler_ranges, sample_labels, sampler_options
from .strategy import add_strategy_args, build_strategy
from .training import build_ddpm, ddpm_parser, prediction_type, tracker_config, train_config

__all__ = [
    "add_evaluation_args",
    "build_end_of_task_eval",
    "add_sampler_args",
    "add_strategy_args",
    "build_ddpm",
    "build_strategy",
    "check_evaluation",
    "check_sampler_ranges",
    "ddpm_parser",
    "new_parser",
    "sample_labels",
    "sampler_options",
    "tracker_config",
    "prediction_type",
    "train_config",
]
