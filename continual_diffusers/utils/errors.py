"""The one exception type for bad user input. CLIs turn it into a single line on stderr and exit code 2."""

from __future__ import annotations


class UserInputError(ValueError):
    """Invalid input from the user (a task file, a CLI flag, a config). Its message says what to fix."""
