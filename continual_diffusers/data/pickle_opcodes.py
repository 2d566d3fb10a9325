"""The pickle opcodes and what each does to the pickle machine of `unpickle`: every opcode `pickletools` lists, read
with the semantics of `pickle._Unpickler`'s `load_<name>`.

A handler reads its opcode's argument from the data and pushes, pops or fills through the machine's methods, which
check and charge everything (`unpickle.PickleMachine`); opcodes that could only run code (instances, extension codes,
persistent ids, out-of-band buffers) are refused. `DISPATCH` maps each opcode byte to its handler; STOP is handled
by the machine's loop.
"""

from __future__ import annotations

import codecs
import pickletools
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from continual_diffusers.data.unpickle import PickleMachine


def _line_int(parser: PickleMachine) -> int:
    return int(parser.line())


def _int(parser: PickleMachine) -> None:
    """INT: protocol 0's decimal int, where "00" and "01" mean False and True."""
    line = parser.line()
    parser.push(line == b"01" if line in (b"00", b"01") else int(line, 0))


def _long(parser: PickleMachine) -> None:
    line = parser.line()
    parser.push(int(line[:-1] if line.endswith(b"L") else line, 0))


def _string(parser: PickleMachine) -> None:
    """STRING: protocol 0's quoted, backslash-escaped Python 2 str."""
    line = parser.line()
    if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
        parser.malformed("the STRING opcode argument must be quoted")
    parser.push(parser.py2_string(codecs.escape_decode(line[1:-1])[0]))


def _binstring(parser: PickleMachine, fmt: str) -> None:
    parser.push(parser.py2_string(bytes(parser.sized(fmt))))


def _long_bytes(parser: PickleMachine, fmt: str) -> None:
    """LONG1/LONG4: a little-endian two's-complement int of the given byte count."""
    parser.push(int.from_bytes(parser.sized(fmt), "little", signed=True))


def _proto(parser: PickleMachine) -> None:
    parser.proto = parser.unpack("<B")
    if parser.proto > 5:
        parser.malformed(f"unknown pickle protocol {parser.proto}")


def _frame(parser: PickleMachine) -> None:
    if parser.unpack("<Q") > parser.end - parser.pos:
        parser.malformed("a frame longer than the data")


def _list(parser: PickleMachine) -> None:
    items = parser.pop_mark()
    target = parser.containers.register([])
    parser.containers.append(target, items)
    parser.push(target)


def _append(parser: PickleMachine) -> None:
    item = parser.pop()
    parser.containers.append(parser.top(), [item])


def _appends(parser: PickleMachine) -> None:
    items = parser.pop_mark()
    parser.containers.append(parser.top(), items)


def _dict(parser: PickleMachine) -> None:
    items = parser.pop_mark()
    target = parser.containers.register({})
    parser.containers.setitems(target, items)
    parser.push(target)


def _setitem(parser: PickleMachine) -> None:
    value = parser.pop()
    key = parser.pop()
    parser.containers.setitems(parser.top(), [key, value])


def _setitems(parser: PickleMachine) -> None:
    items = parser.pop_mark()
    parser.containers.setitems(parser.top(), items)


def _additems(parser: PickleMachine) -> None:
    items = parser.pop_mark()
    parser.containers.additems(parser.top(), items)


def _reduce(parser: PickleMachine) -> None:
    args = parser.pop()
    marker = parser.pop()
    parser.push(parser.reduce(marker, args))


def _build(parser: PickleMachine) -> None:
    state = parser.pop()
    parser.build(parser.top(), state)


def _stack_global(parser: PickleMachine) -> None:
    name, module = parser.pop(), parser.pop()
    if type(name) is not str or type(module) is not str:
        parser.malformed("STACK_GLOBAL needs two strings")
    parser.push(parser.global_(module, name))


def _inst(parser: PickleMachine) -> None:
    module, name = parser.line().decode("utf-8"), parser.line().decode("utf-8")
    parser.global_(module, name)  # names the class if it is not one of ours
    parser.refuse(f"INST creates an instance of '{module}.{name}'; task data has none")


def _refused(reason: str) -> Callable[[PickleMachine], None]:
    return lambda parser: parser.refuse(reason)


_INSTANCES = "it creates class instances; task data has none"
# pickletools' opcode name → handler; each follows pickle._Unpickler's load_<name>.
OPCODES: dict[str, Callable[[PickleMachine], None]] = {
    # protocol and framing (frames are only read-ahead hints)
    "PROTO": _proto,
    "FRAME": _frame,
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
    "EMPTY_TUPLE": lambda p: p.push(p.containers.new_tuple([])),
    "TUPLE": lambda p: p.push(p.containers.new_tuple(p.pop_mark())),
    "TUPLE1": lambda p: p.tuple_n(1),
    "TUPLE2": lambda p: p.tuple_n(2),
    "TUPLE3": lambda p: p.tuple_n(3),
    "EMPTY_LIST": lambda p: p.push(p.containers.register([])),
    "LIST": _list,
    "APPEND": _append,
    "APPENDS": _appends,
    "EMPTY_DICT": lambda p: p.push(p.containers.register({})),
    "DICT": _dict,
    "SETITEM": _setitem,
    "SETITEMS": _setitems,
    "EMPTY_SET": lambda p: p.push(p.containers.new_set(set, [])),
    "ADDITEMS": _additems,
    "FROZENSET": lambda p: p.push(p.containers.new_set(frozenset, p.pop_mark())),
    # stack and memo
    "MARK": lambda p: p.mark(),
    "POP": lambda p: p.pop_any(),
    "POP_MARK": lambda p: p.pop_mark(),
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
    "STACK_GLOBAL": _stack_global,
    "REDUCE": _reduce,
    "BUILD": _build,
    "INST": _inst,
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
DISPATCH: list[Callable[[PickleMachine], None] | None] = [None] * 256
for _op in pickletools.opcodes:
    if _op.name != "STOP":  # handled by the machine's loop
        DISPATCH[ord(_op.code)] = OPCODES[_op.name]  # a KeyError here: a pickletools opcode without a handler
