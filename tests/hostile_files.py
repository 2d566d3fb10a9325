"""Hostile task files for the tests: a small pickle assembler, code-execution payloads that use only what the pickle
reader accepts (numpy dtype/ndarray/_reconstruct/scalar/_frombuffer, builtins, OrderedDict, BUILD, SETITEMS, ...),
memory bombs, a zip writer that can state any size, and a runner that loads files through the real entry points in a
subprocess under a memory limit.

Runner: `python tests/hostile_files.py SPEC.json RESULTS.jsonl`. SPEC is {"limit_mib", "cases": [{"id", "module",
"argv", optional "env" and "timeout_s"}, ...], optional "preload": [module, ...]} or {"limit_mib", "files": [{"kind",
"path"}, ...]}: it imports what it needs, sets RLIMIT_AS to the address space after the imports plus `limit_mib`,
then runs `module.main(argv)` for each case with stdout and stderr captured (a case with a "function" calls
`module.<function>(*argv)` instead: a library entry point, whose exception is the result) or loads each file, writing
one JSON line per case as soon as it is done: a crash shows as missing lines and a negative exit status, a case
blocked past its timeout as a TimeoutError.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import math
import os
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------------------------------------------------
# A pickle assembler: each function returns the bytes of one or a few opcodes (pickletools' names).

PROTO2, PROTO4 = b"\x80\x02", b"\x80\x04"
MARK, STOP, POP, DUP = b"(", b".", b"0", b"2"
NONE, TRUE, FALSE = b"N", b"\x88", b"\x89"
EMPTY_TUPLE, TUPLE, TUPLE1, TUPLE2, TUPLE3 = b")", b"t", b"\x85", b"\x86", b"\x87"
EMPTY_LIST, APPEND, APPENDS = b"]", b"a", b"e"
EMPTY_DICT, SETITEM, SETITEMS = b"}", b"s", b"u"
EMPTY_SET, ADDITEMS = b"\x8f", b"\x90"
REDUCE, BUILD, MEMOIZE, STACK_GLOBAL = b"R", b"b", b"\x94", b"\x93"
MULTIARRAY = "numpy.core.multiarray"  # numpy 1.x's name; the reader accepts numpy._core too
JUNK_POINTER = struct.pack("<Q", 0x4141414141414141)  # an "object pointer" written as bytes


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def text(value: str) -> bytes:
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def raw(value: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(value)) + value


def integer(value: int) -> bytes:
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8b" + struct.pack("<i", len(data)) + data  # LONG4


def put(index: int) -> bytes:
    return b"r" + struct.pack("<I", index)


def get(index: int) -> bytes:
    return b"j" + struct.pack("<I", index)


def shape(dims: tuple[int, ...]) -> bytes:
    return MARK + b"".join(integer(d) for d in dims) + TUPLE


def dtype(typestr: str, order: str = "|", flags: int = 0, elsize: int = -1, fields: bytes = NONE * 3) -> bytes:
    """numpy.dtype(typestr, False, True) + BUILD (3, order, names, fields, subdtype, elsize, alignment, flags)."""
    state = MARK + integer(3) + text(order) + fields + integer(elsize) + integer(-1) + integer(flags) + TUPLE
    return glob("numpy", "dtype") + text(typestr) + FALSE + TRUE + TUPLE3 + REDUCE + state + BUILD


def object_dtype() -> bytes:
    """An object dtype whose flags BUILD resets to 0: numpy then reads object pointers straight from bytes."""
    return dtype("O8", "|", flags=0)


def array(dims: tuple[int, ...], dtype_ops: bytes, data: bytes, fortran: bool = False) -> bytes:
    """_reconstruct(ndarray, (0,), b'b') + BUILD (1, shape, dtype, is_fortran, data), as numpy pickles arrays."""
    head = glob(MULTIARRAY, "_reconstruct") + glob("numpy", "ndarray") + integer(0) + TUPLE1 + raw(b"b") + TUPLE3
    state = MARK + integer(1) + shape(dims) + dtype_ops + (TRUE if fortran else FALSE) + raw(data) + TUPLE
    return head + REDUCE + state + BUILD


def images_ops() -> bytes:
    return array((1, 2, 2, 3), dtype("u1"), bytes(12))


def task_file_pickle(labels_ops: bytes, images: bytes | None = None, command: str | None = None) -> bytes:
    """{1: {"images": uint8 (1, 2, 2, 3), "labels": <labels_ops>}}, and with `command` a task 2 whose caption is
    the command (where an attacker would keep the string a hijacked object runs)."""
    inner = EMPTY_DICT + text("images") + (images or images_ops()) + SETITEM + text("labels") + labels_ops + SETITEM
    task_2 = b""
    if command is not None:
        captions = EMPTY_LIST + text(command) + APPEND
        task_2 = integer(2) + EMPTY_DICT + text("images") + images_ops() + SETITEM
        task_2 += text("labels") + captions + SETITEM + SETITEM
    return PROTO2 + EMPTY_DICT + integer(1) + inner + SETITEM + task_2 + STOP


def call(callable_ops: bytes, *args: str) -> bytes:
    """REDUCE: call whatever `callable_ops` left on the stack with string arguments."""
    return callable_ops + MARK + b"".join(text(a) for a in args) + TUPLE + REDUCE


def pointer_object() -> bytes:
    """numpy.core.multiarray.scalar(object dtype with reset flags, 8 bytes): an object from an address."""
    return glob(MULTIARRAY, "scalar") + object_dtype() + raw(JUNK_POINTER) + TUPLE2 + REDUCE


def write_legacy(path: Path, pickle_bytes: bytes) -> str:
    """np.savez(path, data_structure=pickle_bytes), byte for byte (np.array(bytes) would drop trailing NULs)."""
    data = np.frombuffer(pickle_bytes, dtype=f"S{len(pickle_bytes)}").reshape(()) if pickle_bytes else np.bytes_(b"")
    np.savez(path, data_structure=data)
    return str(path)


# ---------------------------------------------------------------------------------------------------------------------
# Code-execution attempts, built only from names the reader accepts. Each payload is the labels (or the task entry)
# of a legacy task file and tries to run `touch <marker>`; (name, builder(marker) -> pickle bytes, refusal fragment).


def _ordered_dict() -> bytes:
    return glob("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE


def _exec_scalar_pointer_call(marker: str) -> bytes:
    return task_file_pickle(call(pointer_object(), f"touch {marker}"))


def _exec_scalar_pointer_protocol4(marker: str) -> bytes:
    """The same through STACK_GLOBAL and MEMOIZE (protocol 4 spelling)."""
    scalar = text(MULTIARRAY) + text("scalar") + STACK_GLOBAL + MEMOIZE
    ops = scalar + object_dtype() + raw(JUNK_POINTER) + TUPLE2 + REDUCE
    return PROTO4 + task_file_pickle(call(ops, f"touch {marker}"))[2:]


def _exec_forged_flags_scalar(marker: str) -> bytes:
    """An int64 dtype whose BUILD state claims the object flags (0x3F), then scalar() of a pointer, then a call."""
    ops = glob(MULTIARRAY, "scalar") + dtype("i8", "<", flags=0x3F) + raw(JUNK_POINTER) + TUPLE2 + REDUCE
    return task_file_pickle(call(ops, f"touch {marker}"))


def _exec_forged_flags_array(marker: str) -> bytes:
    """Labels: an int64 array whose dtype's BUILD state claims the object flags, holding a pointer."""
    return task_file_pickle(array((1,), dtype("i8", "<", flags=0x3F), JUNK_POINTER), command=f"touch {marker}")


def _exec_object_array_reconstruct(marker: str) -> bytes:
    """An object array whose elements are pointers read from bytes (validation calls .tolist() on object labels)."""
    return task_file_pickle(array((1,), object_dtype(), JUNK_POINTER), command=f"touch {marker}")


def _exec_object_array_frombuffer(marker: str) -> bytes:
    """Protocol 5's _frombuffer(bytes, object dtype, shape, order): an object array straight from bytes."""
    ops = glob("numpy._core.numeric", "_frombuffer") + MARK + raw(JUNK_POINTER) + object_dtype() + shape((1,))
    return task_file_pickle(ops + text("C") + TUPLE + REDUCE, command=f"touch {marker}")


def _exec_ndarray_buffer(marker: str) -> bytes:
    """numpy.ndarray(shape, object dtype, buffer=bytes): the constructor itself as a callable."""
    ops = glob("numpy", "ndarray") + MARK + shape((1,)) + object_dtype() + raw(JUNK_POINTER) + TUPLE + REDUCE
    return task_file_pickle(ops, command=f"touch {marker}")


def _exec_ndarray_offset_leak(marker: str) -> bytes:
    """ndarray(shape, int64, buffer, negative offset): reads memory around a bytes object (an address leak)."""
    ops = glob("numpy", "ndarray") + MARK + shape((64,)) + dtype("i8", "<") + raw(b"x" * 8) + integer(-256) + TUPLE
    return task_file_pickle(ops + REDUCE, command=f"touch {marker}")


def _exec_structured_object_field(marker: str) -> bytes:
    """A void dtype whose BUILD adds an object field: scalar() then reads a pointer out of the bytes."""
    void = glob("numpy", "dtype") + text("V8") + FALSE + TRUE + TUPLE3 + REDUCE
    names = MARK + text("f") + TUPLE
    fields = EMPTY_DICT + text("f") + MARK + object_dtype() + integer(0) + TUPLE + SETITEM
    state = MARK + integer(3) + text("|") + names + fields + NONE + integer(8) + integer(1) + integer(0x3F) + TUPLE
    scalar = glob(MULTIARRAY, "scalar") + MARK + void + state + BUILD + raw(JUNK_POINTER) + TUPLE + REDUCE
    return task_file_pickle(call(scalar, f"touch {marker}"))


def _exec_build_hijacks_get(marker: str) -> bytes:
    """BUILD on an OrderedDict sets an instance attribute `get`: validation's entry.get("labels") would call it."""
    state = MARK + NONE + EMPTY_DICT + text("get") + pointer_object() + SETITEM + TUPLE  # (None, slotstate)
    entry = _ordered_dict() + state + BUILD + text("images") + images_ops() + SETITEM
    entry += text("labels") + text(f"touch {marker}") + SETITEM
    return PROTO2 + EMPTY_DICT + integer(1) + entry + SETITEM + STOP


def _exec_additems_on_dict(marker: str) -> bytes:
    """ADDITEMS on a non-set calls its `add` attribute, here one set by BUILD: a two-step call gadget."""
    state = MARK + NONE + EMPTY_DICT + text("add") + pointer_object() + SETITEM + TUPLE
    return task_file_pickle(_ordered_dict() + state + BUILD + MARK + text(f"touch {marker}") + ADDITEMS)


def _exec_appends_on_bytearray(marker: str) -> bytes:
    """APPENDS on a non-list calls its `extend`: here a bytearray, fed a pointer object."""
    ops = glob("builtins", "bytearray") + EMPTY_TUPLE + REDUCE + MARK + pointer_object() + APPENDS
    return task_file_pickle(ops, command=f"touch {marker}")


def _exec_setitems_on_array(marker: str) -> bytes:
    """SETITEMS on a numpy array: arr[0] = object from a pointer (numpy would call its __int__)."""
    ops = array((2,), dtype("i8", "<"), bytes(16)) + MARK + integer(0) + pointer_object() + SETITEMS
    return task_file_pickle(ops, command=f"touch {marker}")


def _exec_rebuild_finished_array(marker: str) -> bytes:
    """BUILD a second time on the images array (through the memo) with an object dtype: images become pointers."""
    images = images_ops() + put(0)
    rebuild = get(0) + MARK + integer(1) + shape((1,)) + object_dtype() + FALSE + raw(JUNK_POINTER) + TUPLE + BUILD
    return task_file_pickle(rebuild + POP + EMPTY_LIST, images=images, command=f"touch {marker}")


def _exec_reconstruct_other_type(marker: str) -> bytes:
    """_reconstruct with a subtype other than numpy.ndarray (here bytearray, then called)."""
    ops = glob(MULTIARRAY, "_reconstruct") + glob("builtins", "bytearray") + integer(0) + TUPLE1 + raw(b"b")
    return task_file_pickle(call(ops + TUPLE3 + REDUCE, f"touch {marker}"))


def _exec_marker_as_value(marker: str) -> bytes:
    """The scalar function itself smuggled in as data, next to the command it would be called with."""
    return task_file_pickle(MARK + glob(MULTIARRAY, "scalar") + text(f"touch {marker}") + TUPLE)


CODE_EXEC = [
    ("scalar_pointer_call", _exec_scalar_pointer_call, "object dtypes hold object pointers"),
    ("scalar_pointer_protocol4", _exec_scalar_pointer_protocol4, "object dtypes hold object pointers"),
    ("object_array_reconstruct", _exec_object_array_reconstruct, "object dtypes hold object pointers"),
    ("forged_flags_scalar", _exec_forged_flags_scalar, "REDUCE calls only recognised globals, not an int64"),
    ("forged_flags_array", _exec_forged_flags_array, "class ids must be at most 999999"),
    ("object_array_frombuffer", _exec_object_array_frombuffer, "object dtypes hold object pointers"),
    ("ndarray_buffer", _exec_ndarray_buffer, "object dtypes hold object pointers"),
    ("ndarray_offset_leak", _exec_ndarray_offset_leak, "numpy.ndarray is never called"),
    ("structured_object_field", _exec_structured_object_field, "only plain dtypes"),
    ("build_hijacks_get", _exec_build_hijacks_get, "object dtypes hold object pointers"),
    ("additems_on_dict", _exec_additems_on_dict, "object dtypes hold object pointers"),
    ("appends_on_bytearray", _exec_appends_on_bytearray, "object dtypes hold object pointers"),
    ("setitems_on_array", _exec_setitems_on_array, "object dtypes hold object pointers"),
    ("rebuild_finished_array", _exec_rebuild_finished_array, "object dtypes hold object pointers"),
    ("reconstruct_other_type", _exec_reconstruct_other_type, "expected numpy.core.multiarray._reconstruct"),
    ("marker_as_value", _exec_marker_as_value, "holding numpy.core.multiarray.scalar is not plain data"),
]

# ---------------------------------------------------------------------------------------------------------------------
# Python 2 pickles (the CIFAR-10 "python batches" are cPickle protocol 2 files written by Python 2 and numpy 1.x)


def py2_str(value: bytes) -> bytes:
    """A Python 2 str: SHORT_BINSTRING or BINSTRING (read back as bytes with encoding='bytes')."""
    if len(value) < 256:
        return b"U" + bytes([len(value)]) + value
    return b"T" + struct.pack("<i", len(value)) + value


def py2_pickle(value) -> bytes:
    """`value` (dict, list, int, bytes as Python 2 str, uint8 numpy arrays) the way Python 2's cPickle wrote it."""
    return PROTO2 + _py2(value) + STOP


def _py2(value) -> bytes:
    if isinstance(value, dict):
        return EMPTY_DICT + MARK + b"".join(_py2(k) + _py2(v) for k, v in value.items()) + SETITEMS
    if isinstance(value, list):
        return EMPTY_LIST + (MARK + b"".join(_py2(item) for item in value) + APPENDS if value else b"")
    if isinstance(value, bytes):
        return py2_str(value)
    if isinstance(value, np.ndarray):
        head = glob(MULTIARRAY, "_reconstruct") + glob("numpy", "ndarray") + b"K\x00" + TUPLE1 + py2_str(b"b")
        descr = glob("numpy", "dtype") + py2_str(value.dtype.str[1:].encode()) + b"K\x00K\x01" + TUPLE3 + REDUCE
        order = value.dtype.str[0].encode()
        descr += MARK + b"K\x03" + py2_str(order) + NONE * 3 + integer(-1) + integer(-1) + b"K\x00" + TUPLE + BUILD
        dims = MARK + b"".join(integer(d) for d in value.shape) + TUPLE
        state = MARK + b"K\x01" + dims + descr + b"\x89" + py2_str(value.tobytes()) + TUPLE
        return head + TUPLE3 + REDUCE + state + BUILD
    if isinstance(value, int):
        return integer(value)
    raise TypeError(type(value))


def cifar_batch(data_ops: bytes, labels_ops: bytes) -> bytes:
    """A CIFAR-10 batch dict {b'batch_label', b'labels', b'data'} with the given values' opcodes."""
    items = py2_str(b"batch_label") + py2_str(b"x") + py2_str(b"labels") + labels_ops + py2_str(b"data") + data_ops
    return PROTO2 + EMPTY_DICT + MARK + items + SETITEMS + STOP


# ---------------------------------------------------------------------------------------------------------------------
# Zip archives with any stated sizes, and .npy members


def npy_bytes(value: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, value, allow_pickle=False)
    return buffer.getvalue()


def npy_header(dims: tuple[int, ...], descr: str, fortran: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": fortran, "shape": dims})
    return buffer.getvalue()


def write_zip(path: Path, members: list[dict]) -> str:
    """A zip whose members state what they are given: name, data (as stored), and optionally file_size, crc,
    method (0 stored, 8 deflated, ...), flags. Sizes of 4 GiB and more get zip64 extra fields."""
    local, central = io.BytesIO(), io.BytesIO()
    for member in members:
        name, data = member["name"].encode(), member["data"]
        usize, csize = member.get("file_size", len(data)), len(data)
        crc, method, flags = member.get("crc", zlib.crc32(data)), member.get("method", 0), member.get("flags", 0)
        big = usize >= 0xFFFFFFFF or csize >= 0xFFFFFFFF
        extra = struct.pack("<2H2Q", 1, 16, usize, csize) if big else b""
        sizes = (0xFFFFFFFF, 0xFFFFFFFF) if big else (csize, usize)
        offset = local.tell()
        local.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 45, flags, method, 0, 0x21, crc, *sizes, len(name), 0))
        local.write(name + data)
        fields = (45, 45, flags, method, 0, 0x21, crc, *sizes, len(name), len(extra), 0, 0, 0, 0, offset)
        central.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", *fields) + name + extra)
    directory = central.getvalue()
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), local.tell(), 0)
    Path(path).write_bytes(local.getvalue() + directory + end)
    return str(path)


def deflate_zeros(prefix: bytes, num_zeros: int) -> bytes:
    """A raw deflate stream of `prefix` then `num_zeros` zero bytes, built from one repeated block (≈ 1 KB per MiB)."""
    compressor, mib = zlib.compressobj(9, zlib.DEFLATED, -15), bytes(2**20)
    head = compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)  # identical for every further MiB
    whole, rest = divmod(num_zeros, 2**20)
    return head + block * whole + compressor.compress(bytes(rest)) + compressor.flush()


# ---------------------------------------------------------------------------------------------------------------------
# Memory and CPU bombs: tiny files that make a naive reader allocate gigabytes (or loop for hours). Each builder writes
# what it needs into `folder` and returns the path to pass as the task file; (name, builder, refusal fragment).

GIB = 2**30


def _images_member(dims: tuple[int, ...]) -> tuple[bytes, int]:
    header = npy_header(dims, "|u1")
    return header, len(header) + math.prod(dims)


def _bomb_bytes_reduce(folder: Path) -> str:
    return write_legacy(
        folder / "bytes.npz", task_file_pickle(glob("builtins", "bytes") + integer(10**12) + TUPLE1 + REDUCE)
    )


def _bomb_set_of_range(folder: Path) -> str:
    rng = glob("builtins", "range") + integer(10**9) + TUPLE1 + REDUCE
    return write_legacy(folder / "set.npz", task_file_pickle(glob("builtins", "set") + rng + TUPLE1 + REDUCE))


def _bomb_zero_stride_array(folder: Path) -> str:
    """ndarray((10**12,), int64, 8 bytes, offset 0, strides (0,)): 8 TB to np.unique, from 8 bytes."""
    args = shape((10**12,)) + dtype("i8", "<") + raw(bytes(8)) + integer(0) + shape((0,))
    ops = glob("numpy", "ndarray") + MARK + args + TUPLE + REDUCE
    return write_legacy(folder / "stride.npz", task_file_pickle(ops))


def _bomb_task_id(folder: Path) -> str:
    """Task id 10^12: the old 'not contiguous' warning built set(range(1, 10**12))."""
    pickled = PROTO2 + EMPTY_DICT + integer(10**12) + EMPTY_DICT + text("images") + images_ops() + SETITEM
    return write_legacy(folder / "task_id.npz", pickled + SETITEM + STOP)


def _bomb_array_shape(folder: Path) -> str:
    """A pickled array whose BUILD state claims 10^12 elements over 12 bytes of data."""
    return write_legacy(
        folder / "shape.npz", task_file_pickle(EMPTY_LIST, images=array((10**12,), dtype("u1"), bytes(12)))
    )


def _bomb_bytes8_length(folder: Path) -> str:
    return write_legacy(folder / "len.npz", task_file_pickle(b"\x8e" + struct.pack("<Q", 2**62) + b"xy"))


def _bomb_deep_tuple_key(folder: Path) -> str:
    """A dict key nested 10^6 tuples deep: hashing it recursed until the C stack overflowed (exit 139)."""
    pickled = PROTO2 + EMPTY_DICT + EMPTY_TUPLE + TUPLE1 * 10**6 + EMPTY_LIST + SETITEM + STOP
    return write_legacy(folder / "deep.npz", pickled)


def _bomb_colliding_keys(folder: Path) -> str:
    """20,000 dict keys with one hash (multiples of 2**61 - 1): inserting them is quadratic."""
    keys = b"".join(integer(k * (2**61 - 1)) + NONE for k in range(1, 20_001))
    return write_legacy(folder / "keys.npz", task_file_pickle(EMPTY_DICT + MARK + keys + SETITEMS))


def _bomb_opcode_flood(folder: Path) -> str:
    """Ten million NONE/POP pairs: 20 MB of pickle (20 KB deflated) that only burns time."""
    pickled = PROTO2 + b"N0" * 5_000_001 + EMPTY_DICT + STOP
    np.savez_compressed(folder / "flood.npz", data_structure=np.frombuffer(pickled, f"S{len(pickled)}").reshape(()))
    return str(folder / "flood.npz")


def _bomb_npy_header(folder: Path) -> str:
    """A safe-format member whose .npy header claims 10^12 images over 12 bytes."""
    members = [
        {"name": "format.npy", "data": npy_bytes(np.array("continual-diffusers/tasks-v1"))},
        {"name": "task_1/images.npy", "data": npy_header((10**12, 2, 2, 3), "|u1") + bytes(12)},
    ]
    return write_zip(folder / "header.npz", members)


def _bomb_zip_8gb(folder: Path) -> str:
    """An 8 MB deflated member that inflates to 8 GiB, stating so."""
    header, size = _images_member((8 * GIB // 3072, 32, 32, 3))
    data = deflate_zeros(header, size - len(header))
    members = [{"name": "task_1/images.npy", "data": data, "file_size": size, "method": 8}]
    return write_zip(folder / "zip8g.npz", members)


def _bomb_zip_8gb_stated_small(folder: Path) -> str:
    """The same 8 MB stream, its directory stating a 12-byte array: reading must stop at the stated size."""
    header, size = _images_member((1, 2, 2, 3))
    data = deflate_zeros(header, 8 * GIB)
    members = [
        {"name": "format.npy", "data": npy_bytes(np.array("continual-diffusers/tasks-v1"))},
        {"name": "task_1/images.npy", "data": data, "file_size": size, "method": 8},
    ]
    return write_zip(folder / "zip_lie.npz", members)


def _bomb_zip_within_cap(folder: Path) -> str:
    """A 3 MB member stating (honestly) 3 GiB, under the 4 GiB cap: more than the memory limit of the test."""
    header, size = _images_member((3 * GIB // 3072, 32, 32, 3))
    members = [
        {"name": "format.npy", "data": npy_bytes(np.array("continual-diffusers/tasks-v1"))},
        {
            "name": "task_1/images.npy",
            "data": deflate_zeros(header, size - len(header)),
            "file_size": size,
            "method": 8,
        },
    ]
    return write_zip(folder / "zip3g.npz", members)


def _bomb_central_directory(folder: Path) -> str:
    """60,000 directory entries in 4 MB: zipfile keeps ≈ 500 bytes of Python objects for each."""
    members = [{"name": f"{i}.npy", "data": b""} for i in range(60_000)]
    return write_zip(folder / "many.npz", members)


def _bomb_fifo(folder: Path) -> str:
    """A FIFO where the task file should be: reading it blocks forever."""
    path = folder / "fifo.npz"
    os.mkfifo(path)
    return str(path)


BOMBS = [
    ("bytes_reduce", _bomb_bytes_reduce, "builtins.bytes is called only with plain arguments"),
    ("set_of_range", _bomb_set_of_range, "refusing to unpickle 'builtins.range'"),
    ("zero_stride_array", _bomb_zero_stride_array, "numpy.ndarray is never called"),
    ("task_id_10_12", _bomb_task_id, "task ids must be at most 1000000000"),
    ("array_shape_10_12", _bomb_array_shape, "has 1000000000000 bytes, but the pickle holds 12"),
    ("bytes8_length_2_62", _bomb_bytes8_length, "truncated"),
    ("deep_tuple_key", _bomb_deep_tuple_key, "containers nested deeper than 100 levels"),
    ("colliding_keys", _bomb_colliding_keys, "more than 10000 entries in one dict or set"),
    ("opcode_flood", _bomb_opcode_flood, "more than 10000000 pickle opcodes"),
    ("npy_header_10_12", _bomb_npy_header, "but the archive states 12 bytes of data"),
    ("zip_8gib", _bomb_zip_8gb, "more than the cap of 4294967296 bytes"),
    ("zip_8gib_stated_small", _bomb_zip_8gb_stated_small, "Bad CRC-32"),
    ("zip_3gib_within_cap", _bomb_zip_within_cap, "not enough memory to read it"),
    ("central_directory_60k", _bomb_central_directory, "the archive lists 60000 members"),
    ("fifo", _bomb_fifo, "not a regular file"),
]


# ---------------------------------------------------------------------------------------------------------------------
# The runner (see the module docstring)


class _CurrentStderr(logging.StreamHandler):
    """A log handler that writes to whatever sys.stderr is now (each case captures its own)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _address_space() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _limit_memory(limit_mib: int) -> None:
    import resource

    limit = _address_space() + limit_mib * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _on_alarm(signum, frame):
    raise TimeoutError("the case ran past its timeout (blocked?)")


@contextlib.contextmanager
def _case_environment(case: dict):
    """The case's extra environment variables, and an alarm that interrupts a case blocked past its timeout_s (a
    blocking open() or read() is interrupted by the signal and the handler's exception ends the case)."""
    import signal

    saved = {name: os.environ.get(name) for name in case.get("env", {})}
    os.environ.update(case.get("env", {}))
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(int(case.get("timeout_s", 0)))
    try:
        yield
    finally:
        signal.alarm(0)
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)


def run_cases(cases: list[dict], results: Path, limit_mib: int, preload: list[str] = ()) -> None:
    """Each case's `module.main(argv)` with stdout and stderr captured: exit code, output, seconds, escaped exception.
    A case may set "env" (variables for its run) and "timeout_s"; `preload` modules are imported before the limit
    (as the case modules are)."""
    logging.basicConfig(handlers=[_CurrentStderr()], level=logging.INFO)  # entry points' basicConfig is a no-op
    modules = {case["module"]: importlib.import_module(case["module"]) for case in cases}
    for name in preload:
        importlib.import_module(name)
    _limit_memory(limit_mib)
    with open(results, "w") as out:
        for case in cases:
            captured, printed, start, error = io.StringIO(), io.StringIO(), time.perf_counter(), None
            with contextlib.redirect_stderr(captured), contextlib.redirect_stdout(printed):
                try:
                    with _case_environment(case):
                        if "function" in case:
                            target = modules[case["module"]]
                            for name in case["function"].split("."):  # "Class.method" too
                                target = getattr(target, name)
                            target(*case["argv"])
                            code = 0
                        else:
                            code = modules[case["module"]].main(case["argv"])
                except SystemExit as exit_:
                    code = exit_.code
                except BaseException as exc:  # reported, not raised: the test shows it
                    code, error = None, f"{type(exc).__name__}: {exc}"
            seconds = time.perf_counter() - start
            record = {"id": case["id"], "code": code, "stderr": captured.getvalue(), "seconds": seconds}
            out.write(json.dumps({**record, "stdout": printed.getvalue(), "error": error}) + "\n")
            out.flush()


def _convert(kind: str, path: str) -> None:
    """A dataset ("hf": from-hf's reader) or image folder ("folder") converted to task files in a scratch folder."""
    import shutil
    import tempfile

    from continual_diffusers.data import BuildOptions, build_task_files, read_hf_dataset, scan_image_folder

    source = read_hf_dataset(path) if kind == "hf" else scan_image_folder(path)
    scratch = tempfile.mkdtemp(prefix="fuzz-out-")
    try:
        build_task_files(source, BuildOptions(classes_per_task=1, resolution=8), scratch, "fuzz")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def load_files(files: list[dict], results: Path, limit_mib: int) -> None:
    """Load each {"kind": "task" | "cifar" | "hf" | "folder", "path"} with load_tasks / read_batch, or convert it
    (from-hf's and from-folder's readers, then build_task_files): "ok", the UserInputError subclass and its message,
    or "unexpected <exception type>" for anything else."""
    if any(file["kind"] == "hf" for file in files):
        importlib.import_module("pyarrow.parquet")  # imported before the limit, as the data CLI's cases are

    from continual_diffusers.data import load_tasks
    from continual_diffusers.data.cifar10 import read_batch
    from continual_diffusers.utils.errors import UserInputError

    _limit_memory(limit_mib)
    with open(results, "w") as out:
        for file in files:
            start = time.perf_counter()
            try:
                if file["kind"] == "task":
                    load_tasks(file["path"])
                elif file["kind"] == "cifar":
                    read_batch(file["path"])
                else:
                    _convert(file["kind"], file["path"])
                outcome, message = "ok", ""
            except UserInputError as error:
                outcome, message = type(error).__name__, str(error)
            except BaseException as error:  # reported, not raised: the test shows it
                outcome, message = f"unexpected {type(error).__name__}", str(error)[:300]
            seconds = time.perf_counter() - start
            out.write(json.dumps({**file, "outcome": outcome, "message": message, "seconds": seconds}) + "\n")
            out.flush()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: main_ddpm, main_ldm, ...
    spec = json.loads(Path(sys.argv[1]).read_text())
    if "files" in spec:
        load_files(spec["files"], Path(sys.argv[2]), spec["limit_mib"])
    else:
        run_cases(spec["cases"], Path(sys.argv[2]), spec["limit_mib"], spec.get("preload", []))
    os._exit(0)  # skip interpreter teardown (nothing left to flush), it only adds time
