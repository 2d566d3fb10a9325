"""The shared `main()` of every command-line tool: parse (exact flag names only: no prefixes), check every flag's
bounds (utils/bounds.py), set up logging, run, and turn bad input into one `error: …` line on stderr with exit
code 2 (no traceback), and a run that cannot go on (`RunError`: non-finite loss, disk full) into one `error: …` line
with exit code 3."""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Callable
from typing import NoReturn

from .bounds import check_parsed
from .errors import RunError, UserInputError
from .logging import setup_cli_logging

EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 3
# Writes the file system refused for want of space or permission: one line, not a traceback from deep inside.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG}


def _one_line_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    """argparse's error, as one line (its default prints the whole multi-line usage first)."""
    parser.exit(EXIT_BAD_INPUT, f"error: {message} (see {parser.prog} --help)\n")


def _strict(parser: argparse.ArgumentParser) -> None:
    """One-line errors, and no abbreviated flags (`--buffer_typ` must not run as `--buffer_type`), on the parser
    and its sub-commands' parsers."""
    parser.error = _one_line_error.__get__(parser)
    parser.allow_abbrev = False
    for action in parser._actions:  # sub-commands have parsers of their own
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _strict(sub)


def _fail(code: int, message: str) -> int:
    """Close progress bars an exception left open (a bar's line has no newline yet), then print one line."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
    print(f"error: {message}", file=sys.stderr)
    return code


def run_main(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], object], argv=None) -> int:
    _strict(parser)
    args = parser.parse_args(argv)
    setup_cli_logging()
    try:
        check_parsed(parser, args)
        run(args)
    except UserInputError as err:
        return _fail(EXIT_BAD_INPUT, str(err))
    except RunError as err:
        return _fail(EXIT_RUN_FAILED, str(err))
    except OSError as err:
        if err.errno not in STORAGE_ERRNOS:
            raise
        where = f" {err.filename}" if err.filename else ""
        return _fail(EXIT_RUN_FAILED, f"cannot write{where}: {err.strerror}")
    return 0
