"""The exception types the command-line tools turn into one `error: …` line on stderr instead of a traceback.

- `UserInputError` (exit code 2): bad input (a task file, a CLI flag, a config, a checkpoint that does not fit the
  run). Raised before anything is written to the output directory.
- `RunError` (exit code 3): a run that was started properly cannot go on (non-finite loss, disk full). The message
  names where it stopped and which complete checkpoint to resume from.
"""

from __future__ import annotations


class UserInputError(ValueError):
    """Invalid input from the user (a task file, a CLI flag, a config). Its message says what to fix."""


class RunError(RuntimeError):
    """A training run stopped on a fault it cannot repair itself; the message says where and how to resume."""


class NonFiniteError(RunError):
    """A loss, gradient or weight that is NaN or infinite."""


class StorageError(RunError):
    """Writing to the output directory failed (no space left, read-only file system, ...)."""
