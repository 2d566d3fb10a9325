"""Continual-strategy flags and the Namespace → strategy conversion."""

from __future__ import annotations

import argparse

from ..strategies import STRATEGIES, ContinualStrategy


def add_strategy_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Continual strategy")
    g.add_argument("--strategy", choices=sorted(STRATEGIES), default="naive", help="continual-learning method")


def build_strategy(args: argparse.Namespace, tasks) -> ContinualStrategy:
    """The strategy named by --strategy, configured from its flags."""
    return STRATEGIES[args.strategy]()
