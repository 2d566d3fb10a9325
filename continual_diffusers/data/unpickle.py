"""Reading pickles without running them: a pure-data parser for the pickle format (protocols 0-5).

Unpickling calls whatever a file names, and an allow-list of callables does not make that safe: numpy's `scalar`
with an object dtype turns file bytes into an object pointer that REDUCE can then call, BUILD sets the state of any
object, `ndarray(buffer=...)` leaks addresses. So nothing from a pickle is ever called here. `parse_pickle` runs
`PickleMachine`, an interpreter of the pickle virtual machine (the opcodes listed by `pickletools`, read as
`pickle._Unpickler` reads them: `pickle_opcodes`) that can build only

- None, bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, `collections.OrderedDict`, set and
  frozenset (dict keys and set elements: hashable values of these types only), and
- numpy arrays and numpy scalars of plain dtypes (bool, signed/unsigned int, float, complex, bytes 'S', unicode
  'U'; either byte order), rebuilt with `np.frombuffer` from a validated (dtype, shape, raw bytes) triple
  (`pickled_numpy`).

The few globals such a pickle names are markers (`pickle_values.Global`), never callables: the machine recognises
the exact patterns numpy and pickle write for the data above and interprets them itself (`PickleMachine.reduce`,
`PickleMachine.build`): numpy's array, dtype and scalar patterns (listed in `pickled_numpy`), and
`_codecs.encode(text, 'latin1')` (bytes under protocols 0-2), `builtins.bytes()` (empty bytes), and
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
import pickletools
import re
import struct
from typing import Any, NoReturn

from continual_diffusers.data.pickle_containers import PlainContainers
from continual_diffusers.data.pickle_opcodes import DISPATCH
from continual_diffusers.data.pickle_values import Global, describe
from continual_diffusers.data.pickled_numpy import NUMPY_GLOBALS, NUMPY_KINDS, NumpyPatterns
from continual_diffusers.utils.errors import UserInputError

MAX_DEPTH = 100  # containers nested deeper than this are refused (task data nests 3 levels)
MAX_OPCODES = 10_000_000  # ≈ 5 s of parsing; a list of 10 million labels (a 10-million-image task) takes as many
MAX_KEYS_PER_CONTAINER = 10_000  # entries of one dict or set (a task dict has one per task)
MAX_KEYS = 50_000  # entries of all dicts and sets together (colliding hashes: ≈ 5 s at these caps)
MEMORY_BASE = 64 * 2**20  # bytes any pickle may make the parser allocate, plus
MEMORY_PER_BYTE = 8  # bytes per byte of pickle (arrays cost ≈ 2 per byte, lists of small ints ≈ 8)
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


# (module, name) → marker kind. Python 2 names (`__builtin__.set`) are mapped first, as pickle does.
_GLOBALS: dict[tuple[str, str], str] = {
    **NUMPY_GLOBALS,
    ("_codecs", "encode"): "encode",
    ("codecs", "encode"): "encode",
    ("collections", "OrderedDict"): "OrderedDict",
    **{("builtins", name): name for name in ("set", "frozenset", "bytes", "bytearray", "complex")},
}


class PickleMachine:
    """One run of the pickle machine over `data` (see the module docstring). Use `parse_pickle`."""

    def __init__(self, data, encoding: str, max_memory: int, max_depth: int, max_opcodes: int):
        self.buf = memoryview(data).cast("B")
        self.pos, self.end, self.op_start, self.proto = 0, len(self.buf), 0, 0
        self.encoding = encoding
        self.memory_left, self.max_memory = max_memory, max_memory
        self.max_depth, self.max_opcodes, self.opcodes_left = max_depth, max_opcodes, max_opcodes
        self.stack: list = []
        self.metastack: list[list] = []
        self.memo: dict[int, Any] = {}
        self.containers = PlainContainers(self, max_depth, MAX_KEYS_PER_CONTAINER, MAX_KEYS)
        self.numpy = NumpyPatterns(self)

    # -- errors and budgets --------------------------------------------------------------------------------------

    def where(self) -> str:
        op = pickletools.code2op.get(chr(self.buf[self.op_start])) if self.op_start < self.end else None
        return f"opcode {op.name if op else '?'} at byte {self.op_start}"

    def refuse(self, what: str) -> NoReturn:
        raise UnsafePickleError(f"refusing pickle {self.where()}: {what}")

    def malformed(self, what: str) -> NoReturn:
        raise UserInputError(f"not a valid pickle of plain data ({what}; {self.where()})")

    def exceeded(self, what: str, hint: str = "") -> NoReturn:
        raise PickleLimitError(f"{what} ({self.where()}){hint}")

    def spend(self, num_bytes: int) -> None:
        self.memory_left -= num_bytes
        if self.memory_left < 0:
            self.exceeded(f"reading this pickle would take more than {self.max_memory / 2**20:.0f} MiB, the cap for "
                          "its size")  # fmt: skip

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

    def tuple_n(self, n: int) -> None:
        if len(self.stack) < n:
            self.malformed("stack underflow")
        items = self.stack[len(self.stack) - n :]
        del self.stack[len(self.stack) - n :]
        self.push(self.containers.new_tuple(items))

    # -- REDUCE and BUILD: the recognised patterns ------------------------------------------------------------------

    def reduce(self, marker: Any, args: Any) -> Any:
        if not isinstance(marker, Global):
            self.refuse(f"REDUCE calls only recognised globals, not {describe(marker)}")
        if type(args) is not tuple:
            self.refuse(f"REDUCE arguments must be a tuple, got {describe(args)}")
        if marker.kind in NUMPY_KINDS:
            return self.numpy.reduce(marker, args)
        return self.reduce_builtin(marker, args)

    def reduce_builtin(self, marker: Global, args: tuple) -> Any:
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
            return self.containers.new_set(set if kind == "set" else frozenset, args[0] if args else [])
        if kind == "OrderedDict" and not args:
            return self.containers.register(collections.OrderedDict())
        self.refuse(f"{marker} is called only with plain arguments, the way pickle writes them")

    def build(self, target: Any, state: Any) -> None:
        if not self.numpy.build(target, state):
            self.refuse(f"BUILD sets the state of new numpy arrays and dtypes only, not of {describe(target)}")

    def global_(self, module: str, name: str) -> Global:
        if self.proto < 3:  # Python 2 names, mapped the way pickle maps them
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            else:
                module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        kind = _GLOBALS.get((module, name))
        if kind is None:
            raise UnsafePickleError(
                f"refusing to unpickle '{module}.{name}': task files may contain only plain containers, numbers, "
                "strings and numpy arrays"
            )
        return Global(kind, f"{module}.{name}")

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
            handler = DISPATCH[code]
            if handler is None:
                self.malformed(f"unknown opcode {code:#04x}")
            handler(self)

    def too_many_opcodes(self) -> NoReturn:
        self.exceeded(f"more than {self.max_opcodes} pickle opcodes")

    def stop(self) -> Any:
        if self.pos != self.end:
            self.malformed(f"{self.end - self.pos} bytes after the STOP opcode")
        if len(self.stack) != 1 or self.metastack:
            self.malformed("more than the result left on the stack")
        result = self.containers.value(self.stack[0])
        self.containers.check_result(result)
        return result


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
    budget = memory_budget(size) if max_memory is None else max_memory
    parser = PickleMachine(data, encoding, budget, max_depth, max_opcodes)
    try:
        return parser.run()
    except UserInputError:
        raise
    except MemoryError:
        raise PickleLimitError(f"out of memory reading a pickle of {size} bytes ({parser.where()})") from None
    except (ValueError, UnicodeError, struct.error, OverflowError) as error:  # from int(), str(), struct, complex()
        parser.malformed(f"{type(error).__name__}: {' '.join(str(error).split())[:200]}")


restricted_loads = parse_pickle  # the name the rest of the project has used for reading pickles safely
