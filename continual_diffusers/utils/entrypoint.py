"""The shared `main()` of every command-line tool: parse, set up logging, run, and turn bad input into one
`error: …` line on stderr with exit code 2 (no traceback)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .errors import UserInputError
from .logging import setup_cli_logging


def run_main(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], object], argv=None) -> int:
    args = parser.parse_args(argv)
    setup_cli_logging()
    try:
        run(args)
    except UserInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
