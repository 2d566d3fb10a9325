"""Parser construction shared by every entry point."""

from __future__ import annotations

import argparse

from ..utils.bounds import Bounds


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults, and the bounds of every bounded number, in --help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = super()._get_help_string(action)
        return f"{text} [{action.type.describe()}]" if isinstance(action.type, Bounds) else text


def _formatter(prog):
    return _Formatter(prog, max_help_position=40)


def new_parser(description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description, formatter_class=_formatter)
