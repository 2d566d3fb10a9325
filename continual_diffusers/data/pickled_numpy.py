"""numpy arrays, dtypes and scalars from the patterns numpy writes when it pickles them, rebuilt without calling
anything numpy's unpickling would call: for the pickle parser (`unpickle`), and the plain-dtype rules the .npy
reader (`npz`) shares.

Only plain dtypes are built (bool, signed/unsigned int, float, complex, bytes 'S', unicode 'U'; either byte order),
and every array is made with `np.frombuffer` from a validated (dtype, shape, raw bytes) triple. The patterns:

- `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')` + BUILD `(1, shape, dtype, is_fortran, raw)`
  (every protocol; numpy 2 writes `numpy._core`), and protocol 5's `numpy._core.numeric._frombuffer(raw, dtype,
  shape, order)` with in-band bytes;
- `numpy.dtype(typestr, align, copy)` + BUILD `(3, byteorder, None, None, None, elsize, alignment, flags)`;
- `numpy.core.multiarray.scalar(dtype, raw)` (numpy scalars such as `np.int64(3)`).

Anything else numpy-shaped (object/void/structured/datetime dtypes, `numpy.ndarray` called directly, a dtype or
array state of another layout) is refused through the parse's `Checks`, and each allocation is charged to its
memory budget before it is made.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from continual_diffusers.data.pickle_values import (
    Checks,
    Global,
    Marker,
    as_text,
    describe,
    is_flag,
    is_int,
    short_repr,
)

MAX_NDIM = 32  # numpy 1.x's limit
MAX_CODE_POINT = 0x10FFFF  # 'U' arrays hold UCS-4 code units; larger ones crash numpy's str conversion
PLAIN_KINDS = "biufcSU"  # bool, int, uint, float, complex, bytes, unicode
_DTYPE_STR = re.compile(r"([biufcSU])([0-9]{1,10})")

# (module, name) → marker kind, for the names numpy 1.x (`numpy.core`) and numpy 2.x (`numpy._core`) write.
NUMPY_GLOBALS: dict[tuple[str, str], str] = {("numpy", "ndarray"): "ndarray", ("numpy", "dtype"): "dtype"}
for _core in ("numpy.core", "numpy._core"):
    NUMPY_GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = "_reconstruct"
    NUMPY_GLOBALS[(f"{_core}.multiarray", "scalar")] = "scalar"
    NUMPY_GLOBALS[(f"{_core}.numeric", "_frombuffer")] = "_frombuffer"
NUMPY_KINDS = frozenset(NUMPY_GLOBALS.values())


def plain_dtype_problem(dtype: np.dtype) -> str | None:
    """Why `dtype` is not plain data (object, void, structured, datetime, sub-array, zero-size), or None."""
    if dtype.kind not in PLAIN_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        return f"dtype {dtype} is not a plain numeric or string dtype"
    if dtype.itemsize == 0:
        return f"dtype {dtype} has no bytes per element"
    return None


def unicode_problem(array: np.ndarray) -> str | None:
    """For a 'U' array: a code unit numpy cannot turn into a str (above U+10FFFF), or None."""
    if array.dtype.kind != "U" or array.size == 0:
        return None
    units = array.reshape(-1).view(array.dtype.byteorder.replace("|", "=") + "u4")
    largest = int(units.max())
    return f"'U' array holds code point {largest:#x}, above U+10FFFF" if largest > MAX_CODE_POINT else None


class PendingDtype(Marker):
    """`numpy.dtype(typestr, ...)` until its BUILD gives the byte order; `dtype` is then set."""

    def __init__(self, typestr: str):
        self.typestr, self.dtype = typestr, None

    def __repr__(self) -> str:
        return f"numpy.dtype({self.typestr!r})"


class PendingArray(Marker):
    """`_reconstruct(ndarray, (0,), b'b')` until its BUILD gives dtype, shape and data; `array` is then set."""

    def __init__(self):
        self.array = None

    def __repr__(self) -> str:
        return "a numpy array under construction" if self.array is None else "a numpy array"


class NumpyPatterns:
    """The numpy side of one parse: REDUCE on a numpy global and BUILD on what it made.

    Args:
        checks: the parse's memory budget (charged before each allocation) and refusals.
    """

    def __init__(self, checks: Checks):
        self.spend, self.refuse = checks.spend, checks.refuse

    def reduce(self, marker: Global, args: tuple) -> Any:
        """REDUCE of `marker` (a kind in `NUMPY_KINDS`) on the argument tuple `args`."""
        kind, n = marker.kind, len(args)
        if kind == "_reconstruct":
            ndarray = n == 3 and isinstance(args[0], Global) and args[0].kind == "ndarray"
            if not (ndarray and type(args[1]) is tuple and len(args[1]) == 1 and is_int(args[1][0], 0)):
                self.refuse(f"expected {marker}(numpy.ndarray, (0,), b'b')")
            if as_text(args[2]) != "b":
                self.refuse(f"expected {marker}(numpy.ndarray, (0,), b'b')")
            return PendingArray()
        if kind == "dtype":
            if n != 3 or not (is_flag(args[1]) and is_flag(args[2])):
                self.refuse(f"expected numpy.dtype(typestr, align, copy), got {n} arguments")
            return PendingDtype(self.typestr(args[0]))
        if kind == "scalar":
            if n != 2:
                self.refuse(f"expected {marker}(dtype, raw bytes) of a plain dtype, got {n} arguments")
            return self.array(self.dtype(args[0]), (), args[1], False)[()]
        if kind == "ndarray":
            self.refuse("numpy.ndarray is never called: arrays are read only through _reconstruct or _frombuffer")
        # the last of NUMPY_KINDS: _frombuffer
        if n != 4 or as_text(args[3]) not in ("C", "F"):
            self.refuse(f"expected {marker}(buffer, dtype, shape, 'C' or 'F')")
        return self.array(self.dtype(args[1]), args[2], args[0], as_text(args[3]) == "F")

    def build(self, target: Any, state: Any) -> bool:
        """BUILD `state` into a new dtype or array; False (nothing done) if `target` is not one still pending."""
        if isinstance(target, PendingDtype) and target.dtype is None:
            target.dtype = self.make_dtype(target, state)
        elif isinstance(target, PendingArray) and target.array is None:
            if type(state) is not tuple or len(state) != 5 or not is_int(state[0], 1) or not is_flag(state[3]):
                self.refuse(f"an array state must be (1, shape, dtype, is_fortran, raw bytes), got {describe(state)}")
            array = self.array(self.dtype(state[2]), state[1], state[4], bool(state[3]))
            if not array.dtype.isnative:  # numpy's __setstate__ swaps to native byte order (_frombuffer does not)
                self.spend(array.nbytes)
                array = array.astype(array.dtype.newbyteorder("="))
            target.array = array
        else:
            return False
        return True

    def dtype(self, item: Any) -> np.dtype:
        if not isinstance(item, PendingDtype) or item.dtype is None:
            self.refuse(f"expected a numpy dtype made by numpy.dtype(...) and BUILD, got {describe(item)}")
        return item.dtype

    def shape(self, shape: Any) -> tuple[int, ...]:
        if type(shape) is not tuple or len(shape) > MAX_NDIM or not all(is_int(n) and n >= 0 for n in shape):
            self.refuse(f"an array shape must be a tuple of at most {MAX_NDIM} ints >= 0, got {describe(shape)}")
        if any(n >= 2**63 for n in shape):
            self.refuse("an array dimension is larger than 2**63")
        return shape

    def raw(self, raw: Any) -> bytes | bytearray:
        if type(raw) is str:  # Python 2 data read with encoding='latin1'
            self.spend(len(raw))
            return raw.encode("latin-1")
        if type(raw) not in (bytes, bytearray):
            self.refuse(f"array data must be bytes, got {describe(raw)}")
        return raw

    def array(self, dtype: np.dtype, shape: Any, raw: Any, fortran: bool) -> np.ndarray:
        """A new array of `dtype` and `shape` holding exactly the bytes `raw` (C or Fortran order)."""
        shape, raw = self.shape(shape), self.raw(raw)
        count = math.prod(shape)
        if count * dtype.itemsize != len(raw):
            self.refuse(
                f"an array of shape {shape} and dtype {dtype} has {count * dtype.itemsize} bytes, but the pickle "
                f"holds {len(raw)}"
            )
        self.spend(len(raw) + 128)
        flat = np.frombuffer(raw, dtype=dtype, count=count).copy() if count else np.empty(0, dtype)
        problem = unicode_problem(flat)
        if problem:
            self.refuse(problem)
        return flat.reshape(shape, order="F" if fortran else "C")

    def typestr(self, typestr: Any) -> str:
        text = as_text(typestr)
        match = _DTYPE_STR.fullmatch(text) if text else None
        if match is None or int(match[2]) == 0 or int(match[2]) > 2**31 or (match[1] == "b" and match[2] != "1"):
            hint = "object dtypes hold object pointers: " if text and text.startswith("O") else ""
            plain = "only plain dtypes (bool, int, uint, float, complex, 'S', 'U') are read"
            self.refuse(f"{plain}; {hint}got {short_repr(text)}")
        return text

    def make_dtype(self, pending: PendingDtype, state: Any) -> np.dtype:
        """numpy's dtype state for plain dtypes: `(3, byteorder, None, None, None, elsize, alignment, flags)`.

        The dtype is made from the type string and byte order alone; alignment and flags are not used (forged
        object flags cannot reach numpy)."""
        if type(state) is not tuple or len(state) != 8 or not is_int(state[0], 3):
            layout = "(3, byteorder, None, None, None, elsize, align, flags)"
            self.refuse(f"a dtype state must be {layout}, got {short_repr(state)}")
        order = as_text(state[1])
        plain = all(x is None for x in state[2:5]) and all(map(is_int, state[5:]))
        if order not in ("<", ">", "|", "=") or not plain:
            self.refuse(f"not the state of a plain dtype: {short_repr(state)}")
        try:
            dtype = np.dtype(pending.typestr if order == "|" else order + pending.typestr)
        except TypeError:
            self.refuse(f"numpy has no dtype {pending.typestr!r}")
        problem = plain_dtype_problem(dtype)
        if problem or state[5] not in (-1, dtype.itemsize):
            self.refuse(problem or f"dtype {dtype} states {state[5]} bytes per element")
        return dtype
