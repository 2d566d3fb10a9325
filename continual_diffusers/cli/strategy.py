"""Continual-strategy flags, discovered from the registry: every strategy in `STRATEGIES` whose class names a
config dataclass (`config`, strategies/context.py) gets that dataclass's flags, and is built from them. Nothing
here names a strategy.

Strategies are enabled with `--strategy NAME [NAME ...]` or by a strategy's own enabling flag (the earlier
implementation's `--buffer_type …` enables replay, `--ewc_loss` enables EWC). Several enabled strategies are
combined (`CombinedStrategy`), e.g. `--ewc_loss --buffer_type reservoir --buffer_size 2000`.
"""

from __future__ import annotations

import argparse

from ..strategies import STRATEGIES, CombinedStrategy, ContinualStrategy, Naive, StrategyContext
from ..utils.errors import UserInputError
from ..utils.options import add_options, from_args


def registered_configs() -> dict:
    """{name: config class} of every registered strategy with options, read from the registry at each call."""
    return {name: cls.config for name, cls in STRATEGIES.items() if cls.config is not None}


def add_strategy_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Continual strategy", "several enabled strategies are combined (e.g. EWC + replay)")
    g.add_argument(
        "--strategy",
        nargs="+",
        choices=list(STRATEGIES),
        default=None,
        help="continual-learning methods to run together (default: naive fine-tuning)",
    )
    for config in registered_configs().values():
        add_options(parser, config)


def enabled_strategies(args: argparse.Namespace) -> list[str]:
    """Names of the strategies the flags enable, in registry order; ["naive"] when none is."""
    values = vars(args)
    names = set(args.strategy or []) | {n for n, config in registered_configs().items() if config.enabled_in(values)}
    if "naive" in names and len(names) > 1:
        raise UserInputError(f"--strategy naive cannot be combined with {sorted(names - {'naive'})}")
    return [n for n in STRATEGIES if n in names] or ["naive"]


def strategy_configs(args: argparse.Namespace) -> dict:
    """{name: config} of the enabled strategies, validated; the options of a strategy that is off must be unset."""
    names, configs = enabled_strategies(args), registered_configs()
    for name, config in configs.items():
        if name not in names:
            config.check_owned(vars(args))
    return {name: from_args(configs[name], args) for name in names}


def build_strategy(configs: dict, context: StrategyContext, first=()) -> ContinualStrategy:
    """The strategy (or `CombinedStrategy`) of the enabled configs (`strategy_configs`), checked against the run,
    after the already built strategies `first` (main_ldm's LoRA adapters). Naive adds nothing beside another."""
    context = StrategyContext(**{**vars(context), "enabled": configs})
    for config in configs.values():
        config.check(context)
    strategies = [*first, *(config.build(context) for config in configs.values())]
    strategies = [s for s in strategies if not isinstance(s, Naive)] or strategies
    return strategies[0] if len(strategies) == 1 else CombinedStrategy(strategies)
