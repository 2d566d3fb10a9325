"""Utilities every layer may use: the error types the CLIs turn into one-line messages, logging and seeding."""

from .errors import NonFiniteError, RunError, StorageError, UserInputError
from .logging import get_logger
from .seed import derive_seed, make_generator

__all__ = [
    "NonFiniteError",
    "RunError",
    "StorageError",
    "UserInputError",
    "derive_seed",
    "get_logger",
    "make_generator",
]
