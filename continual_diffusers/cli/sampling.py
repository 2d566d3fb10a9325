"""The sampler flags of the evaluation report's parser (`python -m continual_diffusers.evaluation report`); the
training entry points and evaluate.py add `SamplingConfig` like any config (request → options: config/generation)."""

from __future__ import annotations

import argparse

from ..config import AnnealedMCMCConfig, SamplingConfig
from ..utils.options import add_options, from_args


def add_sampler_args(parser: argparse.ArgumentParser) -> None:
    """Sampling flags shared by end-of-task validation (main_ddpm) and the evaluation tools."""
    add_options(parser, SamplingConfig)


def check_sampler_ranges(args: argparse.Namespace) -> None:
    """Sampling flags that must agree with each other (each flag's own bounds are checked when it is parsed)."""
    from_args(SamplingConfig, args)
    if hasattr(args, "mcmc_sampler"):
        from_args(AnnealedMCMCConfig, args)
