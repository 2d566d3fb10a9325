"""Parser construction shared by every entry point."""

from __future__ import annotations

import argparse


def _formatter(prog):
    return argparse.ArgumentDefaultsHelpFormatter(prog, max_help_position=40)


def new_parser(description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description, formatter_class=_formatter)
