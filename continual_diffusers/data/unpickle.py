"""Reading pickles without running them: a pure-data parser for the pickle format (protocols 0-5).

Unpickling calls whatever a file names, and an allow-list of callables does not make that safe: numpy's `scalar`
with an object dtype turns file bytes into an object pointer that REDUCE can then call, BUILD sets the state of any
object, `ndarray(buffer=...)` leaks addresses. So nothing from a pickle is ever called here. `parse_pickle` is an
interpreter of the pickle virtual machine (the opcodes listed by `pickletools`, with the semantics of
`pickle._Unpickler`) that can build only

- None, bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, `collections.OrderedDict`, set and
  frozenset (dict keys and set elements: hashable values of these types only), and
- numpy arrays and numpy scalars of plain dtypes (bool, signed/unsigned int, float, complex, bytes 'S', unicode
  'U'; either byte order), rebuilt with `np.frombuffer` from a validated (dtype, shape, raw bytes) triple.

The few globals such a pickle names are markers, never callables: the parser recognises the exact patterns numpy
and pickle write for the data above and interprets them itself (`_Parser.reduce`, `_Parser.build`):

- `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')` + BUILD `(1, shape, dtype, is_fortran, raw)`
  (every protocol; numpy 2 writes `numpy._core`), and protocol 5's `numpy._core.numeric._frombuffer(raw, dtype,
  shape, order)` with in-band bytes (out-of-band buffers are refused);
- `numpy.dtype(typestr, align, copy)` + BUILD `(3, byteorder, None, None, None, elsize, alignment, flags)`;
- `numpy.core.multiarray.scalar(dtype, raw)` (numpy scalars such as `np.int64(3)`);
- `_codecs.encode(text, 'latin1')` (bytes under protocols 0-2), `builtins.bytes()` (empty bytes), and
  `builtins.set`, `frozenset`, `bytearray`, `complex` and `collections.OrderedDict()` with plain arguments.

Everything else is refused with an `UnsafePickleError` naming it: any other global, object/void/structured/datetime
dtypes, BUILD or SETITEMS/APPENDS/ADDITEMS on anything but the parser's own new arrays/containers, a marker used as
a value or called in any other way, INST/OBJ/NEWOBJ, extension codes, persistent ids, out-of-band buffers.
Limits (`PickleLimitError`): nesting depth (`MAX_DEPTH`, on construction, so that hashing a key cannot recurse
deeply, and on the result), memory (`memory_budget`, counted before each allocation), opcodes executed
(`MAX_OPCODES`) and dict/set entries (`MAX_KEYS_PER_CONTAINER`, `MAX_KEYS`: colliding hashes make insertion
quadratic).
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import math
import pickletools
import re
import reprlib
import struct
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import numpy as np

from continual_diffusers.utils.errors import UserInputError

MAX_DEPTH = 100  # containers nested deeper than this are refused (task data nests 3 levels)
MAX_OPCODES = 10_000_000  # ≈ 5 s of parsing; a list of 10 million labels (a 10-million-image task) takes as many
MAX_KEYS_PER_CONTAINER = 10_000  # entries of one dict or set (a task dict has one per task)
MAX_KEYS = 50_000  # entries of all dicts and sets together (colliding hashes: ≈ 5 s at these caps)
MEMORY_BASE = 64 * 2**20  # bytes any pickle may make the parser allocate, plus
MEMORY_PER_BYTE = 8  # bytes per byte of pickle (arrays cost ≈ 2 per byte, lists of small ints ≈ 8)
MAX_NDIM = 32  # numpy 1.x's limit
MAX_CODE_POINT = 0x10FFFF  # 'U' arrays hold UCS-4 code units; larger ones crash numpy's str conversion
PLAIN_KINDS = "biufcSU"  # bool, int, uint, float, complex, bytes, unicode
_CONTAINER_COST = 200  # bytes of bookkeeping per container (stack slot, depth table entry, ...) on top of its size
_DTYPE_STR = re.compile(r"([biufcSU])([0-9]{1,10})")
_NEWLINE = re.compile(b"\n")
_STOP = ord(".")
_STRUCTS = {fmt: struct.Struct(fmt) for fmt in ("<B", "<H", "<i", "<I", "<Q", ">d")}


class UnsafePickleError(UserInputError):
    """The pickle asks for something other than plain data (a global, an object dtype, ...); nothing was run."""


class PickleLimitError(UserInputError):
    """The pickle exceeds a limit of this reader (depth, memory, opcodes, dict entries); nothing was run."""


def memory_budget(num_bytes: int) -> int:
    """Bytes a pickle of `num_bytes` bytes may make the parser allocate: MEMORY_BASE + MEMORY_PER_BYTE × size."""
    return MEMORY_BASE + MEMORY_PER_BYTE * num_bytes


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


# (module, name) → marker kind. Python 2 names (`__builtin__.set`) are mapped first, as pickle does.
_MARKERS: dict[tuple[str, str], str] = {
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    ("_codecs", "encode"): "encode",
    ("codecs", "encode"): "encode",
    ("collections", "OrderedDict"): "OrderedDict",
    **{("builtins", name): name for name in ("set", "frozenset", "bytes", "bytearray", "complex")},
}
for _core in ("numpy.core", "numpy._core"):  # pickles written by numpy 1.x and by numpy 2.x
    _MARKERS[(f"{_core}.multiarray", "_reconstruct")] = "_reconstruct"
    _MARKERS[(f"{_core}.multiarray", "scalar")] = "scalar"
    _MARKERS[(f"{_core}.numeric", "_frombuffer")] = "_frombuffer"


class _Marker:
    """Something only the parser itself handles: never a value of the result."""


class _Global(_Marker):
    def __init__(self, kind: str, qualname: str):
        self.kind, self.qualname = kind, qualname

    def __repr__(self) -> str:
        return self.qualname


class _PendingDtype(_Marker):
    """`numpy.dtype(typestr, ...)` until its BUILD gives the byte order; `dtype` is then set."""

    def __init__(self, typestr: str):
        self.typestr, self.dtype = typestr, None

    def __repr__(self) -> str:
        return f"numpy.dtype({self.typestr!r})"


class _PendingArray(_Marker):
    """`_reconstruct(ndarray, (0,), b'b')` until its BUILD gives dtype, shape and data; `array` is then set."""

    def __init__(self):
        self.array = None

    def __repr__(self) -> str:
        return "a numpy array under construction" if self.array is None else "a numpy array"


_SCALAR_KEYS = (type(None), bool, int, float, complex, str, bytes)
_CONTAINERS = frozenset({list, tuple, dict, collections.OrderedDict, set, frozenset})
_VALUE_TYPES = frozenset({*_SCALAR_KEYS, bytearray, np.ndarray, *_CONTAINERS})


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


def _what(value: Any) -> str:
    """A short description of `value` for messages (never a full repr: values can be huge or deep)."""
    if isinstance(value, _Marker):
        return repr(value)
    if type(value) is tuple:  # name what makes an argument tuple unusable as a value (depth is bounded)
        inner = next((_what(item) for item in value if isinstance(item, _Marker | tuple)), "")
        return f"a tuple holding {inner.removeprefix('a tuple holding ')}" if inner else "a tuple"
    name = type(value).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def _text(value: Any) -> str | None:
    """A str, or ASCII bytes (Python 2 pickles read with encoding='bytes') as str; None for anything else."""
    if type(value) is str:
        return value
    if type(value) is bytes and value.isascii():
        return value.decode("ascii")
    return None


def _is_int(value: Any, *allowed: int) -> bool:
    return type(value) is int and (not allowed or value in allowed)


def _flag(value: Any) -> bool:
    return type(value) is bool or _is_int(value, 0, 1)


class _Parser:
    """One run of the pickle machine over `data` (see the module docstring). Use `parse_pickle`."""

    def __init__(self, data, encoding: str, max_memory: int, max_depth: int, max_opcodes: int):
        self.buf = memoryview(data).cast("B")
        self.pos, self.end, self.op_start, self.proto = 0, len(self.buf), 0, 0
        self.encoding = encoding
        self.memory_left, self.max_memory = max_memory, max_memory
        self.max_depth, self.max_opcodes, self.opcodes_left = max_depth, max_opcodes, max_opcodes
        self.keys_left = MAX_KEYS
        self.stack: list = []
        self.metastack: list[list] = []
        self.memo: dict[int, Any] = {}
        # Containers built here (ids): the lists, dicts and sets this parser may fill; the depth of each tuple and
        # frozenset, which of them can be keys, which tuples hold markers. `keep` holds every container so that no
        # id is reused while these tables refer to it.
        self.owned: set[int] = set()
        self.depth: dict[int, int] = {}
        self.hashable: set[int] = set()
        self.marked: set[int] = set()
        self.keep: list = []

    # -- errors and budgets --------------------------------------------------------------------------------------

    def where(self) -> str:
        op = pickletools.code2op.get(chr(self.buf[self.op_start])) if self.op_start < self.end else None
        return f"opcode {op.name if op else '?'} at byte {self.op_start}"

    def refuse(self, what: str) -> NoReturn:
        raise UnsafePickleError(f"refusing pickle {self.where()}: {what}")

    def malformed(self, what: str) -> NoReturn:
        raise UserInputError(f"not a valid pickle of plain data ({what}; {self.where()})")

    def spend(self, num_bytes: int) -> None:
        self.memory_left -= num_bytes
        if self.memory_left < 0:
            raise PickleLimitError(
                f"reading this pickle would take more than {self.max_memory / 2**20:.0f} MiB, the cap for its "
                f"size ({self.where()})"
            )

    # -- reading arguments -------------------------------------------------------------------------------------

    def take(self, n: int) -> memoryview:
        """The next `n` bytes (a view: whoever keeps them pays for the copy)."""
        if n < 0:
            self.malformed(f"a negative length {n}")
        if n > self.end - self.pos:
            self.malformed(f"truncated: {n} more bytes expected, {self.end - self.pos} left")
        self.pos += n
        return self.buf[self.pos - n : self.pos]

    def unpack(self, fmt: str) -> Any:
        layout = _STRUCTS[fmt]
        if self.pos + layout.size > self.end:
            self.malformed(f"truncated: {layout.size} more bytes expected, {self.end - self.pos} left")
        self.pos += layout.size
        return layout.unpack_from(self.buf, self.pos - layout.size)[0]

    def sized(self, fmt: str, cost_per_byte: int = 1) -> memoryview:
        """A length (struct format `fmt`), then that many bytes; charges `cost_per_byte` per byte kept."""
        view = self.take(self.unpack(fmt))
        self.spend(cost_per_byte * len(view) + 64)
        return view

    def line(self) -> bytes:
        match = _NEWLINE.search(self.buf, self.pos)
        if match is None:
            self.malformed("truncated: a line without its newline")
        self.spend(4 * (match.start() - self.pos))  # a str decoded from it takes up to 4 bytes per byte
        line = bytes(self.buf[self.pos : match.start()])
        self.pos = match.end()
        return line

    def py2_string(self, raw: bytes) -> str | bytes:
        """A Python 2 `str`: kept as bytes with encoding='bytes', decoded otherwise (as `pickle` does)."""
        return raw if self.encoding == "bytes" else raw.decode(self.encoding)

    # -- the stack and the memo ------------------------------------------------------------------------------------

    def push(self, value: Any) -> None:  # its 8 bytes are charged per opcode in `run`
        self.stack.append(value)

    def pop(self) -> Any:
        if not self.stack:
            self.malformed("stack underflow")
        return self.stack.pop()

    def top(self) -> Any:
        if not self.stack:
            self.malformed("stack underflow")
        return self.stack[-1]

    def pop_mark(self) -> list:
        if not self.metastack:
            self.malformed("no MARK to pop to")
        items, self.stack = self.stack, self.metastack.pop()
        return items

    def mark(self) -> None:
        self.spend(64)
        self.metastack.append(self.stack)
        self.stack = []

    def pop_any(self) -> None:
        """POP: the top item, or the items above the last MARK when the stack above it is empty (as pickle does)."""
        if self.stack:
            self.stack.pop()
        else:
            self.pop_mark()

    def put(self, index: int) -> None:
        if index < 0:
            self.malformed("negative memo index")
        self.spend(100)
        self.memo[index] = self.top()

    def get(self, index: int) -> None:
        if index not in self.memo:
            self.malformed(f"memo index {index} was never stored")
        self.push(self.memo[index])

    # -- values and containers -------------------------------------------------------------------------------------

    def value(self, item: Any) -> Any:
        """`item` as a value that may go into a container or the result: finished arrays resolve, markers refuse."""
        if type(item) in _SCALAR_KEYS:
            return item
        if isinstance(item, _PendingArray) and item.array is not None:
            return item.array
        if isinstance(item, _Marker) or (type(item) is tuple and id(item) in self.marked):
            self.refuse(f"{_what(item)} is not plain data and cannot be used as a value")
        return item

    def is_key(self, item: Any) -> bool:
        """Hashable plain data: scalars, numpy scalars, and tuples/frozensets of those (their depth is bounded)."""
        if type(item) in _SCALAR_KEYS or (isinstance(item, np.generic) and item.dtype.kind in PLAIN_KINDS):
            return True
        return type(item) in (tuple, frozenset) and id(item) in self.hashable

    def key(self, item: Any) -> Any:
        item = self.value(item)
        if not self.is_key(item):
            self.refuse(f"{_what(item)} cannot be a dict key or set element (only hashable plain data can)")
        return item

    def register(self, container: Any, children: Iterable = ()) -> Any:
        """Record a new container. Tuples and frozensets (immutable, so this is final) also get their depth (1 +
        deepest child: bounded here so that hashing or comparing keys cannot recurse deeply), whether they are
        keys (hashable plain data) and whether they hold markers (then they are arguments, never values)."""
        self.spend(sys.getsizeof(container) + _CONTAINER_COST)
        self.keep.append(container)
        if type(container) not in (tuple, frozenset):
            self.owned.add(id(container))
            return container
        depth, key, marked = 0, True, False
        for child in children:
            depth = max(depth, self.depth.get(id(child), 0))
            key = key and self.is_key(child)
            marked = marked or isinstance(child, _Marker) or id(child) in self.marked
        if depth + 1 > self.max_depth:
            self.too_deep()
        self.depth[id(container)] = depth + 1
        if key and not marked:
            self.hashable.add(id(container))
        if marked:
            self.marked.add(id(container))
        return container

    def too_deep(self) -> NoReturn:
        raise PickleLimitError(
            f"containers nested deeper than {self.max_depth} levels ({self.where()}); task data nests 3 levels"
        )

    def count_keys(self, size: int, added: int) -> None:
        self.keys_left -= added
        if size + added > MAX_KEYS_PER_CONTAINER or self.keys_left < 0:
            raise PickleLimitError(
                f"more than {MAX_KEYS_PER_CONTAINER} entries in one dict or set, or {MAX_KEYS} in all ({self.where()})"
            )

    def own(self, target: Any, kinds: tuple, what: str) -> Any:
        """`target` if it is a container of one of `kinds` that this parser built; refused otherwise."""
        if type(target) not in kinds or id(target) not in self.owned:
            self.refuse(f"{what} only the parser's own {kinds[0].__name__}s, not {_what(target)}")
        return target

    def new_tuple(self, items: list) -> tuple:
        finished = [x.array if isinstance(x, _PendingArray) and x.array is not None else x for x in items]
        return self.register(tuple(finished), finished)

    def tuple_n(self, n: int) -> None:
        if len(self.stack) < n:
            self.malformed("stack underflow")
        items = self.stack[len(self.stack) - n :]
        del self.stack[len(self.stack) - n :]
        self.push(self.new_tuple(items))

    def append(self, target: Any, items: list) -> None:
        target = self.own(target, (list,), "APPEND/APPENDS/LIST fill")
        self.spend(8 * len(items))
        target.extend([self.value(item) for item in items])

    def setitems(self, target: Any, items: list) -> None:
        target = self.own(target, (dict, collections.OrderedDict), "SETITEM/SETITEMS/DICT fill")
        if len(items) % 2:
            self.malformed("SETITEMS with an odd number of items")
        self.count_keys(len(target), len(items) // 2)
        self.spend(100 * len(items))
        for key, value in zip(items[::2], items[1::2], strict=True):
            target[self.key(key)] = self.value(value)

    def additems(self, target: Any, items: list) -> None:
        target = self.own(target, (set,), "ADDITEMS fills")
        self.count_keys(len(target), len(items))
        self.spend(100 * len(items))
        target.update([self.key(item) for item in items])

    def new_set(self, kind: type, items: Iterable) -> set | frozenset:
        items = [self.key(item) for item in items]
        self.count_keys(0, len(items))
        self.spend(100 * len(items))
        return self.register(kind(items), items)

    # -- numpy ---------------------------------------------------------------------------------------------------

    def dtype(self, item: Any) -> np.dtype:
        if not isinstance(item, _PendingDtype) or item.dtype is None:
            self.refuse(f"expected a numpy dtype made by numpy.dtype(...) and BUILD, got {_what(item)}")
        return item.dtype

    def shape(self, shape: Any) -> tuple[int, ...]:
        if type(shape) is not tuple or len(shape) > MAX_NDIM or not all(_is_int(n) and n >= 0 for n in shape):
            self.refuse(f"an array shape must be a tuple of at most {MAX_NDIM} ints >= 0, got {_what(shape)}")
        if any(n >= 2**63 for n in shape):
            self.refuse("an array dimension is larger than 2**63")
        return shape

    def raw(self, raw: Any) -> bytes | bytearray:
        if type(raw) is str:  # Python 2 data read with encoding='latin1'
            self.spend(len(raw))
            return raw.encode("latin-1")
        if type(raw) not in (bytes, bytearray):
            self.refuse(f"array data must be bytes, got {_what(raw)}")
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
        text = _text(typestr)
        match = _DTYPE_STR.fullmatch(text) if text else None
        if match is None or int(match[2]) == 0 or int(match[2]) > 2**31 or (match[1] == "b" and match[2] != "1"):
            hint = "object dtypes hold object pointers: " if text and text.startswith("O") else ""
            plain = "only plain dtypes (bool, int, uint, float, complex, 'S', 'U') are read"
            self.refuse(f"{plain}; {hint}got {short_repr(text)}")
        return text

    def make_dtype(self, pending: _PendingDtype, state: Any) -> np.dtype:
        """numpy's dtype state for plain dtypes: `(3, byteorder, None, None, None, elsize, alignment, flags)`.

        The dtype is made from the type string and byte order alone; alignment and flags are not used (forged
        object flags cannot reach numpy)."""
        if type(state) is not tuple or len(state) != 8 or not _is_int(state[0], 3):
            layout = "(3, byteorder, None, None, None, elsize, align, flags)"
            self.refuse(f"a dtype state must be {layout}, got {short_repr(state)}")
        order = _text(state[1])
        plain = all(x is None for x in state[2:5]) and all(map(_is_int, state[5:]))
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

    # -- REDUCE and BUILD: the recognised patterns ------------------------------------------------------------------

    def reduce(self, marker: Any, args: Any) -> Any:
        if not isinstance(marker, _Global):
            self.refuse(f"REDUCE calls only recognised globals, not {_what(marker)}")
        if type(args) is not tuple:
            self.refuse(f"REDUCE arguments must be a tuple, got {_what(args)}")
        kind, n = marker.kind, len(args)
        if kind == "_reconstruct":
            ndarray = n == 3 and isinstance(args[0], _Global) and args[0].kind == "ndarray"
            if not (ndarray and type(args[1]) is tuple and len(args[1]) == 1 and _is_int(args[1][0], 0)):
                self.refuse(f"expected {marker}(numpy.ndarray, (0,), b'b')")
            if _text(args[2]) != "b":
                self.refuse(f"expected {marker}(numpy.ndarray, (0,), b'b')")
            return _PendingArray()
        if kind == "dtype":
            if n != 3 or not (_flag(args[1]) and _flag(args[2])):
                self.refuse(f"expected numpy.dtype(typestr, align, copy), got {n} arguments")
            return _PendingDtype(self.typestr(args[0]))
        if kind == "scalar":
            if n != 2:
                self.refuse(f"expected {marker}(dtype, raw bytes) of a plain dtype, got {n} arguments")
            return self.array(self.dtype(args[0]), (), args[1], False)[()]
        if kind == "ndarray":
            self.refuse("numpy.ndarray is never called: arrays are read only through _reconstruct or _frombuffer")
        if kind == "_frombuffer":
            if n != 4 or _text(args[3]) not in ("C", "F"):
                self.refuse(f"expected {marker}(buffer, dtype, shape, 'C' or 'F')")
            return self.array(self.dtype(args[1]), args[2], args[0], _text(args[3]) == "F")
        return self.reduce_builtin(marker, args)

    def reduce_builtin(self, marker: _Global, args: tuple) -> Any:
        kind, types = marker.kind, tuple(type(a) for a in args)
        latin1 = len(args) == 2 and type(args[1]) is str and args[1] in ("latin1", "latin-1")
        if kind == "encode" and types == (str, str) and latin1:
            self.spend(len(args[0]) + 64)
            return args[0].encode("latin-1")
        if kind == "bytes" and not args:
            return b""
        if kind == "bytearray" and (types in ((), (bytes,)) or (types == (str, str) and latin1)):
            self.spend(len(args[0]) + 64 if args else 64)
            return bytearray(*args)
        if kind == "complex" and types in ((float, float), (int, int), (int, float), (float, int)):
            return complex(*args)
        if kind in ("set", "frozenset") and types in ((), (list,), (tuple,)):
            return self.new_set(set if kind == "set" else frozenset, args[0] if args else [])
        if kind == "OrderedDict" and not args:
            return self.register(collections.OrderedDict())
        self.refuse(f"{marker} is called only with plain arguments, the way pickle writes them")

    def build(self, target: Any, state: Any) -> None:
        if isinstance(target, _PendingDtype) and target.dtype is None:
            target.dtype = self.make_dtype(target, state)
        elif isinstance(target, _PendingArray) and target.array is None:
            if type(state) is not tuple or len(state) != 5 or not _is_int(state[0], 1) or not _flag(state[3]):
                self.refuse(f"an array state must be (1, shape, dtype, is_fortran, raw bytes), got {_what(state)}")
            array = self.array(self.dtype(state[2]), state[1], state[4], bool(state[3]))
            if not array.dtype.isnative:  # numpy's __setstate__ swaps to native byte order (_frombuffer does not)
                self.spend(array.nbytes)
                array = array.astype(array.dtype.newbyteorder("="))
            target.array = array
        else:
            self.refuse(f"BUILD sets the state of new numpy arrays and dtypes only, not of {_what(target)}")

    def global_(self, module: str, name: str) -> _Global:
        if self.proto < 3:  # Python 2 names, mapped the way pickle maps them
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            else:
                module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        kind = _MARKERS.get((module, name))
        if kind is None:
            raise UnsafePickleError(
                f"refusing to unpickle '{module}.{name}': task files may contain only plain containers, numbers, "
                "strings and numpy arrays"
            )
        return _Global(kind, f"{module}.{name}")

    def inst(self) -> None:
        module, name = self.line().decode("utf-8"), self.line().decode("utf-8")
        self.global_(module, name)  # names the class if it is not one of ours
        self.refuse(f"INST creates an instance of '{module}.{name}'; task data has none")

    def stack_global(self) -> None:
        name, module = self.pop(), self.pop()
        if type(name) is not str or type(module) is not str:
            self.malformed("STACK_GLOBAL needs two strings")
        self.push(self.global_(module, name))

    # -- opcodes with stack effects beyond one push (the others are in _OPCODES) -----------------------------------

    def proto_op(self) -> None:
        self.proto = self.unpack("<B")
        if self.proto > 5:
            self.malformed(f"unknown pickle protocol {self.proto}")

    def frame_op(self) -> None:
        if self.unpack("<Q") > self.end - self.pos:
            self.malformed("a frame longer than the data")

    def list_op(self) -> None:
        items = self.pop_mark()
        target = self.register([])
        self.append(target, items)
        self.push(target)

    def append_op(self) -> None:
        item = self.pop()
        self.append(self.top(), [item])

    def appends_op(self) -> None:
        items = self.pop_mark()
        self.append(self.top(), items)

    def dict_op(self) -> None:
        items = self.pop_mark()
        target = self.register({})
        self.setitems(target, items)
        self.push(target)

    def setitem_op(self) -> None:
        value = self.pop()
        key = self.pop()
        self.setitems(self.top(), [key, value])

    def setitems_op(self) -> None:
        items = self.pop_mark()
        self.setitems(self.top(), items)

    def additems_op(self) -> None:
        items = self.pop_mark()
        self.additems(self.top(), items)

    def reduce_op(self) -> None:
        args = self.pop()
        marker = self.pop()
        self.push(self.reduce(marker, args))

    def build_op(self) -> None:
        state = self.pop()
        self.build(self.top(), state)

    # -- the machine ---------------------------------------------------------------------------------------------

    def run(self) -> Any:
        while True:
            if self.pos >= self.end:
                self.malformed("truncated: no STOP opcode")
            self.opcodes_left -= 1
            self.memory_left -= 8  # a stack slot: each opcode pushes at most one item
            if self.opcodes_left < 0:
                self.too_many_opcodes()
            if self.memory_left < 0:
                self.spend(0)
            self.op_start, code = self.pos, self.buf[self.pos]
            self.pos += 1
            if code == _STOP:
                return self.stop()
            handler = _DISPATCH[code]
            if handler is None:
                self.malformed(f"unknown opcode {code:#04x}")
            handler(self)

    def too_many_opcodes(self) -> NoReturn:
        raise PickleLimitError(f"more than {self.max_opcodes} pickle opcodes ({self.where()})")

    def stop(self) -> Any:
        if self.pos != self.end:
            self.malformed(f"{self.end - self.pos} bytes after the STOP opcode")
        if len(self.stack) != 1 or self.metastack:
            self.malformed("more than the result left on the stack")
        result = self.value(self.stack[0])
        self.check_result(result)
        return result

    def check_result(self, result: Any) -> None:
        """Walk the result without recursion: plain types only, no reference cycles, nesting within max_depth.

        Lists, dicts and sets can grow after they were put into others (memo references), so only this walk
        knows their depth."""
        depth_of: dict[int, int] = {}
        on_path: set[int] = set()
        todo: list[tuple[Any, bool]] = [(result, False)]
        while todo:
            item, finished = todo.pop()
            if type(item) not in _CONTAINERS:
                if type(item) not in _VALUE_TYPES and not isinstance(item, np.generic):
                    self.refuse(f"the result holds {_what(item)}")
                continue
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            if finished:
                on_path.discard(id(item))
                depth_of[id(item)] = 1 + max((depth_of.get(id(child), 0) for child in children), default=0)
                if depth_of[id(item)] > self.max_depth:
                    self.too_deep()
            elif id(item) in on_path:
                self.refuse("the pickle holds a reference cycle, which plain task data never has")
            elif id(item) not in depth_of:
                on_path.add(id(item))
                todo.append((item, True))
                types = {type(child) for child in children}
                walk = (types & _CONTAINERS) | (types - _VALUE_TYPES)  # containers, and numpy scalars to check
                if walk:
                    todo.extend((child, False) for child in children if type(child) in walk)


def _line_int(parser: _Parser) -> int:
    return int(parser.line())


def _int(parser: _Parser) -> None:
    """INT: protocol 0's decimal int, where "00" and "01" mean False and True."""
    line = parser.line()
    parser.push(line == b"01" if line in (b"00", b"01") else int(line, 0))


def _long(parser: _Parser) -> None:
    line = parser.line()
    parser.push(int(line[:-1] if line.endswith(b"L") else line, 0))


def _string(parser: _Parser) -> None:
    """STRING: protocol 0's quoted, backslash-escaped Python 2 str."""
    line = parser.line()
    if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
        parser.malformed("the STRING opcode argument must be quoted")
    parser.push(parser.py2_string(codecs.escape_decode(line[1:-1])[0]))


def _binstring(parser: _Parser, fmt: str) -> None:
    parser.push(parser.py2_string(bytes(parser.sized(fmt))))


def _long_bytes(parser: _Parser, fmt: str) -> None:
    """LONG1/LONG4: a little-endian two's-complement int of the given byte count."""
    parser.push(int.from_bytes(parser.sized(fmt), "little", signed=True))


def _refused(reason: str) -> Callable[[_Parser], None]:
    return lambda parser: parser.refuse(reason)


_INSTANCES = "it creates class instances; task data has none"
# pickletools' opcode name → handler; each follows pickle._Unpickler's load_<name>.
_OPCODES: dict[str, Callable[[_Parser], None]] = {
    # protocol and framing (frames are only read-ahead hints)
    "PROTO": _Parser.proto_op,
    "FRAME": _Parser.frame_op,
    # numbers, None, booleans
    "INT": _int,
    "BININT": lambda p: p.push(p.unpack("<i")),
    "BININT1": lambda p: p.push(p.unpack("<B")),
    "BININT2": lambda p: p.push(p.unpack("<H")),
    "LONG": _long,
    "LONG1": lambda p: _long_bytes(p, "<B"),
    "LONG4": lambda p: _long_bytes(p, "<i"),
    "FLOAT": lambda p: p.push(float(p.line())),
    "BINFLOAT": lambda p: p.push(p.unpack(">d")),
    "NONE": lambda p: p.push(None),
    "NEWTRUE": lambda p: p.push(True),
    "NEWFALSE": lambda p: p.push(False),
    # Python 2 str, str, bytes, bytearray
    "STRING": _string,
    "BINSTRING": lambda p: _binstring(p, "<i"),
    "SHORT_BINSTRING": lambda p: _binstring(p, "<B"),
    "UNICODE": lambda p: p.push(str(p.line(), "raw-unicode-escape")),
    "SHORT_BINUNICODE": lambda p: p.push(str(p.sized("<B", 4), "utf-8", "surrogatepass")),
    "BINUNICODE": lambda p: p.push(str(p.sized("<I", 4), "utf-8", "surrogatepass")),
    "BINUNICODE8": lambda p: p.push(str(p.sized("<Q", 4), "utf-8", "surrogatepass")),
    "SHORT_BINBYTES": lambda p: p.push(bytes(p.sized("<B"))),
    "BINBYTES": lambda p: p.push(bytes(p.sized("<I"))),
    "BINBYTES8": lambda p: p.push(bytes(p.sized("<Q"))),
    "BYTEARRAY8": lambda p: p.push(bytearray(p.sized("<Q"))),
    # containers
    "EMPTY_TUPLE": lambda p: p.push(p.new_tuple([])),
    "TUPLE": lambda p: p.push(p.new_tuple(p.pop_mark())),
    "TUPLE1": lambda p: p.tuple_n(1),
    "TUPLE2": lambda p: p.tuple_n(2),
    "TUPLE3": lambda p: p.tuple_n(3),
    "EMPTY_LIST": lambda p: p.push(p.register([])),
    "LIST": _Parser.list_op,
    "APPEND": _Parser.append_op,
    "APPENDS": _Parser.appends_op,
    "EMPTY_DICT": lambda p: p.push(p.register({})),
    "DICT": _Parser.dict_op,
    "SETITEM": _Parser.setitem_op,
    "SETITEMS": _Parser.setitems_op,
    "EMPTY_SET": lambda p: p.push(p.new_set(set, [])),
    "ADDITEMS": _Parser.additems_op,
    "FROZENSET": lambda p: p.push(p.new_set(frozenset, p.pop_mark())),
    # stack and memo
    "MARK": _Parser.mark,
    "POP": _Parser.pop_any,
    "POP_MARK": _Parser.pop_mark,
    "DUP": lambda p: p.push(p.top()),
    "PUT": lambda p: p.put(_line_int(p)),
    "BINPUT": lambda p: p.put(p.unpack("<B")),
    "LONG_BINPUT": lambda p: p.put(p.unpack("<I")),
    "MEMOIZE": lambda p: p.put(len(p.memo)),
    "GET": lambda p: p.get(_line_int(p)),
    "BINGET": lambda p: p.get(p.unpack("<B")),
    "LONG_BINGET": lambda p: p.get(p.unpack("<I")),
    # globals and the recognised patterns
    "GLOBAL": lambda p: p.push(p.global_(p.line().decode("utf-8"), p.line().decode("utf-8"))),
    "STACK_GLOBAL": _Parser.stack_global,
    "REDUCE": _Parser.reduce_op,
    "BUILD": _Parser.build_op,
    "INST": _Parser.inst,
    "OBJ": _refused(_INSTANCES),
    "NEWOBJ": _refused(_INSTANCES),
    "NEWOBJ_EX": _refused(_INSTANCES),
    "EXT1": _refused("extension codes name registered callables"),
    "EXT2": _refused("extension codes name registered callables"),
    "EXT4": _refused("extension codes name registered callables"),
    "PERSID": _refused("persistent ids need the writer's own loader"),
    "BINPERSID": _refused("persistent ids need the writer's own loader"),
    "NEXT_BUFFER": _refused("out-of-band buffers are not read; pickle with in-band data"),
    "READONLY_BUFFER": _refused("out-of-band buffers are not read; pickle with in-band data"),
}
_DISPATCH: list[Callable[[_Parser], None] | None] = [None] * 256
for _op in pickletools.opcodes:
    if _op.name != "STOP":  # handled in `run`
        _DISPATCH[ord(_op.code)] = _OPCODES[_op.name]  # a KeyError here: a pickletools opcode without a handler


def parse_pickle(
    data,
    *,
    encoding: str = "ASCII",
    max_memory: int | None = None,
    max_depth: int = MAX_DEPTH,
    max_opcodes: int = MAX_OPCODES,
) -> Any:
    """Read the plain data of a pickle without calling anything from it (see the module docstring).

    Args:
        data: the pickle (bytes or any contiguous buffer).
        encoding: how to read Python 2 `str` objects: "bytes" keeps them as bytes (CIFAR-10 needs this), any other
            codec decodes them (ASCII, pickle's default).
        max_memory: bytes the parser may allocate; default `memory_budget(len(data))`.
        max_depth: deepest container nesting accepted.
        max_opcodes: most opcodes executed.

    Returns:
        The value, built only from the types listed in the module docstring.

    Raises:
        UnsafePickleError: the pickle asks for something other than plain data (nothing has been executed).
        PickleLimitError: the pickle exceeds a depth, memory, opcode or entry limit, or memory ran out.
        UserInputError: the bytes are not a valid pickle.
    """
    if encoding != "bytes":
        codecs.lookup(encoding)  # an unknown encoding is the caller's error (LookupError)
    size = memoryview(data).nbytes
    parser = _Parser(data, encoding, memory_budget(size) if max_memory is None else max_memory, max_depth, max_opcodes)
    try:
        return parser.run()
    except UserInputError:
        raise
    except MemoryError:
        raise PickleLimitError(f"out of memory reading a pickle of {size} bytes ({parser.where()})") from None
    except (ValueError, UnicodeError, struct.error, OverflowError) as error:  # from int(), str(), struct, complex()
        parser.malformed(f"{type(error).__name__}: {' '.join(str(error).split())[:200]}")


restricted_loads = parse_pickle  # the name the rest of the project has used for reading pickles safely
