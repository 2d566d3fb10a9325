"""Logger access. Nothing is configured at import time; entry points call `setup_cli_logging` once."""

from __future__ import annotations

import logging


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def setup_cli_logging(level: int = logging.INFO) -> None:
    """Plain one-line log format for the command-line tools (never called by library code)."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=level)
