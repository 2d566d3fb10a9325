"""Logger access. Nothing is configured at import time; entry points call `setup_cli_logging` once."""

from __future__ import annotations

import logging
import sys


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def setup_cli_logging(level: int = logging.INFO) -> None:
    """Plain one-line log format for the command-line tools (never called by library code).

    Hugging Face's own "Loading weights" / download bars are switched off so stderr keeps to our progress bars and
    to one `error: …` line on bad input."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=level)
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # read by transformers when it is imported later
    for name in ("transformers", "diffusers"):
        module = sys.modules.get(name)
        if module is not None:
            module.utils.logging.disable_progress_bar()
