"""Logger access. Nothing is configured at import time; entry points call `setup_cli_logging` once."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def quiet_libraries():
    """diffusers and transformers at error level only, inside the block: they warn on stderr about config keys they
    ignore and weights they initialise, and a refusal must stay one line."""
    from diffusers.utils import logging as dlogging
    from transformers.utils import logging as tlogging

    levels = dlogging.get_verbosity(), tlogging.get_verbosity()
    dlogging.set_verbosity_error()
    tlogging.set_verbosity_error()
    try:
        yield
    finally:
        dlogging.set_verbosity(levels[0])
        tlogging.set_verbosity(levels[1])
