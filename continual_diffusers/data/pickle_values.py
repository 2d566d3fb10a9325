"""What the pickle machine's stack holds (`unpickle`): plain values, and markers that never become values, with
bounded descriptions of both for error messages (values read from a file can be huge or deeply nested), and the
`Checks` through which every part of a parse charges memory and reports problems.

A marker stands for something only the parser itself handles: a global's name (`Global`, never resolved to the
object it names) or a numpy object under construction (`pickled_numpy.PendingDtype` / `PendingArray`).
"""

from __future__ import annotations

import collections
import reprlib
from typing import Any, NoReturn, Protocol

import numpy as np

SCALAR_TYPES = (type(None), bool, int, float, complex, str, bytes)  # hashable plain values
CONTAINER_TYPES = frozenset({list, tuple, dict, collections.OrderedDict, set, frozenset})
VALUE_TYPES = frozenset({*SCALAR_TYPES, bytearray, np.ndarray, *CONTAINER_TYPES})


class Checks(Protocol):
    """How the parts of one parse charge memory and report problems (the machine implements it, naming the opcode
    and byte offset in every message)."""

    def spend(self, num_bytes: int) -> None:
        """Charge `num_bytes` to the memory budget; `PickleLimitError` past it."""

    def refuse(self, what: str) -> NoReturn:
        """`UnsafePickleError`: the pickle asks for something other than plain data."""

    def malformed(self, what: str) -> NoReturn:
        """`UserInputError`: the bytes are not a valid pickle."""

    def exceeded(self, what: str, hint: str = "") -> NoReturn:
        """`PickleLimitError`: a limit (depth, entries, memory, opcodes) is exceeded."""


class Marker:
    """Something only the parser itself handles: never a value of the result."""


class Global(Marker):
    """A global a pickle names (GLOBAL, STACK_GLOBAL): `kind` says which recognised pattern it marks."""

    def __init__(self, kind: str, qualname: str):
        self.kind, self.qualname = kind, qualname

    def __repr__(self) -> str:
        return self.qualname


class _ShortRepr(reprlib.Repr):
    """reprlib with huge ints shown by size (their repr raises ValueError past 4300 digits, and is slow before)."""

    def repr_int(self, x: int, level: int) -> str:
        if abs(x) < 10**30:
            return repr(x)
        return f"<an int of about {int(x.bit_length() * 0.30103) + 1} digits>"


_SHORT = _ShortRepr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxtuple = 3, 60, 60, 8, 8


def short_repr(value: Any) -> str:
    """A bounded, recursion-free repr of a value read from a file, for error messages (at most a few lines' worth
    whatever the value's size or depth)."""
    if isinstance(value, np.integer):
        value = int(value)
    return _SHORT.repr(value)


def describe(value: Any) -> str:
    """A short description of `value` for messages (never a full repr: values can be huge or deep)."""
    if isinstance(value, Marker):
        return repr(value)
    if type(value) is tuple:  # name what makes an argument tuple unusable as a value (depth is bounded)
        inner = next((describe(item) for item in value if isinstance(item, Marker | tuple)), "")
        return f"a tuple holding {inner.removeprefix('a tuple holding ')}" if inner else "a tuple"
    name = type(value).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def as_text(value: Any) -> str | None:
    """A str, or ASCII bytes (Python 2 pickles read with encoding='bytes') as str; None for anything else."""
    if type(value) is str:
        return value
    if type(value) is bytes and value.isascii():
        return value.decode("ascii")
    return None


def is_int(value: Any, *allowed: int) -> bool:
    """`value` is an int (not a bool), and one of `allowed` if any are given."""
    return type(value) is int and (not allowed or value in allowed)


def is_flag(value: Any) -> bool:
    """`value` is a bool, or the int 0 or 1 (how older pickles write flags)."""
    return type(value) is bool or is_int(value, 0, 1)
