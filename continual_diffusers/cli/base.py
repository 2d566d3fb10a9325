"""Parser construction shared by every entry point: `--help` shows every option's default and the bounds of every
bounded number (the parser itself lives in utils/entrypoint.py, which the light tools import without the models),
and `--config` (training entry points) reads a JSON file of flag values."""

from __future__ import annotations

import argparse

from ..utils.entrypoint import ConfigFileAction, Parser, new_parser, show_default

__all__ = ["Parser", "add_config_arg", "new_parser", "show_default"]


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    """`--config PATH`: flag values from a JSON file (a run's config.json, or an object of flag values) become the
    defaults, and the command-line flags apply on top; the file's values are checked like flags (types, choices,
    bounds). See `utils.entrypoint.ConfigFileAction`."""
    parser.add_argument(
        "--config",
        action=ConfigFileAction,
        default=None,
        metavar="PATH",
        help="JSON file of flag values, used as defaults that the command-line flags override: a run's "
        'config.json (its "args" are read) or an object {"flag_name": value} with values as in config.json; '
        "relative paths in it are relative to the working directory, not to the file",
    )
