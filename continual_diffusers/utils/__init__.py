"""Utilities every layer may use: the error types the CLIs turn into one-line messages, logging, seeding and the
process settings of a training run."""

from .errors import NonFiniteError, RunError, StorageError, UserInputError
from .logging import get_logger
from .process import ProcessTuning, tuned_for_training
from .seed import derive_seed, make_generator

__all__ = [
    "NonFiniteError",
    "ProcessTuning",
    "RunError",
    "StorageError",
    "UserInputError",
    "derive_seed",
    "get_logger",
    "make_generator",
    "tuned_for_training",
]
