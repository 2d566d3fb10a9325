"""A pickle reader that can only build plain data: containers, numbers, strings and numpy arrays.

Plain unpickling runs whatever callable a file names (`os.system`, `builtins.eval`, ...), so a task file from
someone else is code. The legacy task format and the CIFAR-10 "python batches" are pickles, so every pickle this
project reads goes through `restricted_loads`, whose unpickler resolves only the globals listed in `_allowed()`.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import codecs
import collections
import functools
import importlib
import io
import pickle
from typing import Any

import numpy as np

from continual_diffusers.utils.errors import UserInputError


class UnsafePickleError(UserInputError):
    """A pickle asked for a global outside the allow-list; nothing from the pickle was executed."""


def _numpy_core(submodule: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core (the old path still imports, with a DeprecationWarning).
    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:  # numpy 1.x
        return importlib.import_module(f"numpy.core.{submodule}")


@functools.cache
def _allowed() -> dict[tuple[str, str], Any]:
    """(module, name) → object for every global a pickle of plain data and numpy arrays may ask for."""
    multiarray, numeric = _numpy_core("multiarray"), _numpy_core("numeric")
    allowed: dict[tuple[str, str], Any] = {
        # Protocols < 5 reach these through REDUCE; protocol 2 also pickles bytes via codecs.encode.
        ("builtins", name): getattr(builtins, name)
        for name in ("set", "frozenset", "bytearray", "complex", "slice", "range", "bytes")
    }
    allowed[("_codecs", "encode")] = codecs.encode
    allowed[("codecs", "encode")] = codecs.encode
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    for package in ("numpy.core", "numpy._core"):  # pickles written by numpy 1.x and by numpy 2.x
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5 arrays
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose `find_class` returns only allow-listed globals (see module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 pickles (e.g. CIFAR-10) name `__builtin__.set`; map them the way pickle itself does.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return _allowed()[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to unpickle '{module}.{name}': task files may contain only plain containers, numbers, "
                "strings and numpy arrays"
            ) from None


def restricted_loads(data: bytes, *, encoding: str = "ASCII") -> object:
    """Unpickle `data`, refusing any global that could run code.

    Args:
        data: the pickle bytes.
        encoding: how to decode Python 2 `str` objects (`"bytes"` keeps them as bytes, as CIFAR-10 needs).

    Returns:
        The unpickled object, built only from dict/list/tuple/set/scalars/str/bytes and numpy arrays.

    Raises:
        UnsafePickleError: the pickle names a global outside the allow-list (nothing has been executed).
        UserInputError: the bytes are not a valid pickle.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise UserInputError(f"not a valid pickle of plain data ({type(error).__name__}: {error})") from None
