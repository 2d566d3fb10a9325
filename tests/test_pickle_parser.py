"""The pure-data pickle parser (`continual_diffusers.data.unpickle.parse_pickle`).

Benign data round-trips exactly as `pickle.loads` reads it (keys, types, dtypes, shapes, bytes, memory order) under
protocols 0-5, with numpy 1.x and 2.x module names and as Python 2 pickles (CIFAR-10); every rule the parser
enforces is checked on its own with a hand-assembled pickle: nothing outside plain data is built, limits hold, and
malformed bytes are one UserInputError.
"""

from __future__ import annotations

import collections
import pickle
import pickletools
import struct

import hostile_files as h
import numpy as np
import pytest
from hostile_files import (
    APPENDS,
    BUILD,
    DUP,
    EMPTY_DICT,
    EMPTY_LIST,
    EMPTY_TUPLE,
    MARK,
    NONE,
    PROTO2,
    REDUCE,
    SETITEM,
    SETITEMS,
    STOP,
    TUPLE,
    TUPLE1,
    TUPLE2,
    array,
    dtype,
    glob,
    integer,
    raw,
    text,
)

from continual_diffusers.data.unpickle import (
    MAX_KEYS_PER_CONTAINER,
    PickleLimitError,
    UnsafePickleError,
    parse_pickle,
    restricted_loads,
)
from continual_diffusers.utils.errors import UserInputError

BENIGN = {
    "ints": [0, 1, -2, 255, 256, 65535, 65536, -(2**31), 2**31, 2**70, -(2**70)],
    "floats": (1.5, float("inf"), -0.0, 1e-300),
    "complex": 1 + 2j,
    "text": "caption é ☃ 😀",
    "bytes": b"\x00\xff" * 200,
    "empty_bytes": b"",
    "bytearray": bytearray(b"ab"),
    "set": {1, 2, (3, "x")},
    "frozenset": frozenset({"a", 1.5}),
    "ordered": collections.OrderedDict(b=1, a=[2]),
    "nested": [[1, [2, (3,)]], {"k": [None, True, False]}, ()],
    "uint8_images": np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3),
    "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "non_contiguous": np.arange(10)[::2],
    "zero_d": np.array(7),
    "empty": np.zeros((0, 3), dtype=np.float32),
    "big_endian": np.arange(5, dtype=">i4"),
    "unicode": np.array(["hello", "é☃😀"], dtype="<U5"),
    "unicode_big_endian": np.array(["ab"], dtype=">U3"),
    "bytes_array": np.array([b"ab", b"c"]),
    "bool": np.array([True, False]),
    "float16": np.arange(3, dtype=np.float16),
    "complex64": np.array([1 + 2j], dtype=np.complex64),
    "int64_scalar": np.int64(3),
    "float32_scalar": np.float32(2.5),
    "str_scalar": np.str_("hé"),
    "big_endian_scalar": np.frombuffer(b"\0\0\0\5", ">i4")[0],
    None: True,
    7: False,
    (1, "a"): "tuple key",
    np.int64(9): "numpy int key",
}


def assert_same(got, expected) -> None:
    """Equal in type and value; arrays in dtype, shape, bytes, memory order and writability."""
    assert type(got) is type(expected), (type(got), type(expected))
    if isinstance(expected, np.ndarray):
        assert (got.dtype, got.shape, got.tobytes()) == (expected.dtype, expected.shape, expected.tobytes())
        assert got.flags.f_contiguous == expected.flags.f_contiguous and got.flags.writeable
    elif isinstance(expected, dict):
        assert list(got) == list(expected)
        for key in expected:
            assert_same(got[key], expected[key])
    elif isinstance(expected, list | tuple):
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert_same(g, e)
    else:
        assert got == expected


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_benign_data_reads_exactly_as_pickle_loads(protocol):
    data = pickle.dumps(BENIGN, protocol=protocol)
    assert_same(parse_pickle(data), pickle.loads(data))
    assert_same(restricted_loads(data), pickle.loads(data))  # the name the rest of the project uses


def as_numpy1(data: bytes) -> bytes:
    """The pickle as numpy 1.x writes it: `numpy.core` for `numpy._core` (then re-framed by pickletools)."""
    for new in ("multiarray", "numeric"):
        new, old = f"numpy._core.{new}", f"numpy.core.{new}"
        data = data.replace(bytes([0x8C, len(new)]) + new.encode(), bytes([0x8C, len(old)]) + old.encode())
        data = data.replace(new.encode() + b"\n", old.encode() + b"\n")
    return pickletools.optimize(data)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_numpy_1_module_names_read_the_same(protocol):
    data = pickle.dumps(BENIGN, protocol=protocol)
    old = as_numpy1(data)
    assert b"numpy._core" not in old and b"numpy.core" in old
    assert_same(parse_pickle(old), pickle.loads(data))


def cifar_like_batch() -> dict:
    rng = np.random.default_rng(0)
    return {
        b"batch_label": b"training batch 1 of 5",
        b"labels": rng.integers(0, 10, 20).tolist(),
        b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(20)],
    }


@pytest.mark.parametrize("encoding", ["bytes", "latin1"])
def test_python2_cifar_pickles_read_as_pickle_loads_reads_them(encoding):
    data = h.py2_pickle(cifar_like_batch())
    assert_same(parse_pickle(data, encoding=encoding), pickle.loads(data, encoding=encoding))
    batch = parse_pickle(data, encoding="bytes")
    assert sorted(batch) == [b"batch_label", b"data", b"filenames", b"labels"]


def test_python2_text_protocol_strings():
    data = b"(dp0\nS'data'\np1\nS'\\x00\\xff\\n'\np2\nsS\"labels\"\np3\n(lp4\nI3\naI01\nas."
    assert parse_pickle(data, encoding="bytes") == pickle.loads(data, encoding="bytes")
    assert parse_pickle(data, encoding="latin1") == pickle.loads(data, encoding="latin1")
    with pytest.raises(UserInputError, match="UnicodeDecodeError"):  # as pickle.loads: ASCII cannot decode \xff
        parse_pickle(data)


def test_shared_references_are_kept_and_are_not_cycles():
    shared = [1, 2]
    data = pickle.dumps({"a": shared, "b": shared, "c": (shared, shared)}, protocol=2)
    loaded = parse_pickle(data)
    assert loaded["a"] is loaded["b"] is loaded["c"][0] and loaded == pickle.loads(data)


# ---------------------------------------------------------------------------------------------------------------------
# Every rule on its own: (id, pickle bytes, exception class, message fragment)


def _p(*ops: bytes) -> bytes:
    return PROTO2 + b"".join(ops) + STOP


def _object_state_array(typestr: str = "O8") -> bytes:
    return array((1,), dtype(typestr), bytes(8))


REFUSED = [
    ("global", _p(glob("os", "system")), UnsafePickleError, "refusing to unpickle 'os.system'"),
    ("global_python2", _p(glob("__builtin__", "eval")), UnsafePickleError, "refusing to unpickle 'builtins.eval'"),
    ("range", _p(glob("builtins", "range")), UnsafePickleError, "refusing to unpickle 'builtins.range'"),
    ("slice", _p(glob("builtins", "slice")), UnsafePickleError, "refusing to unpickle 'builtins.slice'"),
    ("stack_global", _p(text("posix"), text("system"), b"\x93"), UnsafePickleError, "'posix.system'"),
    ("inst", b"(ios\nsystem\n.", UnsafePickleError, "refusing to unpickle 'os.system'"),
    ("inst_of_allowed_name", b"(inumpy\nndarray\n.", UnsafePickleError, "INST creates an instance"),
    ("obj", _p(MARK, glob("numpy", "ndarray"), b"o"), UnsafePickleError, "opcode OBJ"),
    ("newobj", _p(glob("numpy", "ndarray"), EMPTY_TUPLE, b"\x81"), UnsafePickleError, "opcode NEWOBJ"),
    ("newobj_ex", _p(glob("numpy", "ndarray"), EMPTY_TUPLE, EMPTY_DICT, b"\x92"), UnsafePickleError, "NEWOBJ_EX"),
    ("ext1", _p(b"\x82\x01"), UnsafePickleError, "extension codes"),
    ("persid", b"Pid\n.", UnsafePickleError, "persistent ids"),
    ("binpersid", _p(text("id"), b"Q"), UnsafePickleError, "persistent ids"),
    ("next_buffer", _p(b"\x97"), UnsafePickleError, "out-of-band buffers"),
    ("readonly_buffer", _p(b"\x98"), UnsafePickleError, "out-of-band buffers"),
    # REDUCE and BUILD only in the recognised patterns
    ("reduce_on_a_value", _p(glob("builtins", "complex"), integer(1), integer(2), TUPLE2, REDUCE, EMPTY_TUPLE, REDUCE),
     UnsafePickleError, "REDUCE calls only recognised globals, not a complex"),
    ("reduce_args_not_tuple", _p(glob("builtins", "set"), EMPTY_LIST, REDUCE), UnsafePickleError, "must be a tuple"),
    ("ndarray_called", _p(glob("numpy", "ndarray"), EMPTY_TUPLE, REDUCE), UnsafePickleError, "never called"),
    ("bytes_with_size", _p(glob("builtins", "bytes"), integer(5), TUPLE1, REDUCE), UnsafePickleError,
     "builtins.bytes is called only with plain arguments"),
    ("encode_other_codec", _p(glob("_codecs", "encode"), text("x"), text("rot13"), TUPLE2, REDUCE),
     UnsafePickleError, "_codecs.encode is called only"),
    ("set_of_unhashable", _p(glob("builtins", "set"), EMPTY_LIST, EMPTY_LIST, b"a", TUPLE1, REDUCE),
     UnsafePickleError, "a list cannot be a dict key or set element"),
    ("complex_of_str", _p(glob("builtins", "complex"), text("1"), text("2"), TUPLE2, REDUCE), UnsafePickleError,
     "builtins.complex is called only"),
    ("build_on_list", _p(EMPTY_LIST, EMPTY_DICT, BUILD), UnsafePickleError, "not of a list"),
    ("build_on_ordered_dict", _p(glob("collections", "OrderedDict"), EMPTY_TUPLE, REDUCE, EMPTY_DICT, BUILD),
     UnsafePickleError, "not of an OrderedDict"),
    ("build_twice", _p(dtype("i8", "<"), MARK, integer(3), text(">"), NONE * 3, integer(-1), integer(-1),
                       integer(0), TUPLE, BUILD), UnsafePickleError, "not of numpy.dtype('i8')"),
    ("setitems_on_list", _p(EMPTY_LIST, MARK, integer(1), integer(2), SETITEMS), UnsafePickleError,
     "fill only the parser's own dicts, not a list"),
    ("setitem_on_array", _p(array((2,), dtype("i8", "<"), bytes(16)), integer(0), integer(5), SETITEM),
     UnsafePickleError, "own dicts, not a numpy array"),
    ("appends_on_dict", _p(EMPTY_DICT, MARK, integer(1), APPENDS), UnsafePickleError, "own lists, not a dict"),
    ("appends_on_bytearray", _p(glob("builtins", "bytearray"), EMPTY_TUPLE, REDUCE, MARK, integer(65), APPENDS),
     UnsafePickleError, "own lists, not a bytearray"),
    ("additems_on_frozenset", _p(MARK, b"\x91", MARK, integer(1), b"\x90"), UnsafePickleError, "own sets"),
    ("unhashable_key", _p(EMPTY_DICT, EMPTY_LIST, integer(1), SETITEM), UnsafePickleError, "a list cannot be a dict"),
    ("tuple_of_list_key", _p(EMPTY_DICT, EMPTY_LIST, TUPLE1, integer(1), SETITEM), UnsafePickleError,
     "a tuple cannot be a dict key"),
    ("global_as_value", _p(EMPTY_LIST, glob("numpy", "dtype"), b"a"), UnsafePickleError, "numpy.dtype is not plain"),
    ("unbuilt_array_as_value", _p(EMPTY_LIST, glob(h.MULTIARRAY, "_reconstruct"), glob("numpy", "ndarray"),
                                  integer(0), TUPLE1, raw(b"b"), b"\x87", REDUCE, b"a"),
     UnsafePickleError, "a numpy array under construction is not plain data"),
    ("dtype_as_value", _p(EMPTY_LIST, dtype("i8", "<"), b"a"), UnsafePickleError, "numpy.dtype('i8') is not plain"),
    ("marker_result", _p(glob("numpy", "dtype")), UnsafePickleError, "numpy.dtype is not plain data"),
    # dtypes and arrays
    ("object_dtype", _p(_object_state_array("O8")), UnsafePickleError, "object dtypes hold object pointers"),
    ("void_dtype", _p(_object_state_array("V8")), UnsafePickleError, "got 'V8'"),
    ("datetime_dtype", _p(_object_state_array("M8")), UnsafePickleError, "got 'M8'"),
    ("bool_of_2_bytes", _p(_object_state_array("b2")), UnsafePickleError, "got 'b2'"),
    ("unknown_size", _p(_object_state_array("i3")), UnsafePickleError, "numpy has no dtype 'i3'"),
    ("zero_size", _p(_object_state_array("U0")), UnsafePickleError, "got 'U0'"),
    ("structured_state", _p(array((1,), dtype("V8", fields=MARK + text("f") + TUPLE + EMPTY_DICT + NONE), bytes(8))),
     UnsafePickleError, "got 'V8'"),
    ("fields_on_plain", _p(array((1,), dtype("i8", "<", fields=MARK + text("f") + TUPLE + EMPTY_DICT + NONE),
                                 bytes(8))), UnsafePickleError, "not the state of a plain dtype"),
    ("dtype_elsize_lie", _p(array((1,), dtype("S4", elsize=8), bytes(4))), UnsafePickleError, "states 8 bytes"),
    ("dtype_order", _p(array((1,), dtype("i8", "!"), bytes(8))), UnsafePickleError, "not the state of a plain"),
    ("shape_negative", _p(array((-1,), dtype("u1"), b"")), UnsafePickleError, "ints >= 0"),
    ("shape_huge", _p(array((2**64,), dtype("u1"), b"")), UnsafePickleError, "larger than 2**63"),
    ("shape_lie", _p(array((10**12,), dtype("u1"), bytes(8))), UnsafePickleError, "has 1000000000000 bytes"),
    ("too_many_dims", _p(array((1,) * 33, dtype("u1"), b"\0")), UnsafePickleError, "at most 32 ints"),
    ("code_point", _p(array((1,), dtype("U1", "<"), struct.pack("<I", 0x110000))), UnsafePickleError,
     "code point 0x110000"),
    ("scalar_length", _p(glob(h.MULTIARRAY, "scalar"), dtype("i8", "<"), raw(bytes(4)), TUPLE2, REDUCE),
     UnsafePickleError, "has 8 bytes, but the pickle holds 4"),
    ("frombuffer_order", _p(glob("numpy._core.numeric", "_frombuffer"), MARK, raw(bytes(8)), dtype("i8", "<"),
                            integer(1), TUPLE1, text("K"), TUPLE, REDUCE), UnsafePickleError, "'C' or 'F'"),
    ("reconstruct_args", _p(glob(h.MULTIARRAY, "_reconstruct"), glob("numpy", "ndarray"), integer(5), TUPLE1,
                            raw(b"b"), b"\x87", REDUCE), UnsafePickleError, "expected numpy.core.multiarray"),
    # cycles, depth and the other limits
    ("cycle", _p(EMPTY_LIST, h.put(0), h.get(0), b"a"), UnsafePickleError, "reference cycle"),
    ("deep_tuple", _p(EMPTY_TUPLE, TUPLE1 * 10**6), PickleLimitError, "nested deeper than 100 levels"),
    ("deep_lists_through_memo", _p(*(EMPTY_LIST + h.put(i) + b"0" for i in range(150)),
                                   *(h.get(i) + h.get(i + 1) + b"a" + b"0" for i in range(149)), h.get(0)),
     PickleLimitError, "nested deeper than 100 levels"),  # each list filled after it went into its parent
    ("dict_entries", _p(EMPTY_DICT, MARK, *(integer(i) + NONE for i in range(MAX_KEYS_PER_CONTAINER + 1)), SETITEMS),
     PickleLimitError, "more than 10000 entries in one dict or set"),
    # malformed bytes
    ("empty", b"", UserInputError, "truncated: no STOP opcode"),
    ("truncated", pickle.dumps([1, 2, 3], protocol=2)[:-3], UserInputError, "truncated"),
    ("trailing_bytes", pickle.dumps([1], protocol=2) + b"junk", UserInputError, "4 bytes after the STOP opcode"),
    ("unknown_opcode", b"\xff.", UserInputError, "unknown opcode 0xff"),
    ("stack_underflow", _p(REDUCE), UserInputError, "stack underflow"),
    ("no_mark", _p(TUPLE), UserInputError, "no MARK to pop to"),
    ("memo_missing", _p(h.get(3)), UserInputError, "memo index 3 was never stored"),
    ("negative_length", _p(b"T" + struct.pack("<i", -5)), UserInputError, "a negative length -5"),
    ("protocol_6", b"\x80\x06N.", UserInputError, "unknown pickle protocol 6"),
    ("unquoted_string", b"Sabc\n.", UserInputError, "must be quoted"),
    ("long_of_5000_digits", b"L" + b"9" * 5000 + b"L\n.", UserInputError, "not a valid pickle of plain data"),
    ("two_results", _p(NONE, NONE), UserInputError, "more than the result left on the stack"),
    ("open_mark", _p(MARK, NONE), UserInputError, "more than the result left on the stack"),
    ("frame_too_long", b"\x80\x04\x95" + struct.pack("<Q", 100) + b"N.", UserInputError, "a frame longer"),
    ("complex_overflow", _p(glob("builtins", "complex"), integer(10**400), integer(0), TUPLE2, REDUCE),
     UserInputError, "OverflowError"),
]  # fmt: skip


@pytest.mark.parametrize("case", REFUSED, ids=[case[0] for case in REFUSED])
def test_refused(case):
    _, data, error, fragment = case
    with pytest.raises(error) as caught:
        parse_pickle(data)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_limits_are_parameters():
    data = pickle.dumps(list(range(1000)), protocol=2)
    with pytest.raises(PickleLimitError, match="more than 100 pickle opcodes"):
        parse_pickle(data, max_opcodes=100)
    with pytest.raises(PickleLimitError, match="would take more than 0 MiB"):
        parse_pickle(pickle.dumps(b"x" * 10**6, protocol=3), max_memory=10**5)
    nested = pickle.dumps([[[[1]]]], protocol=2)
    assert parse_pickle(nested, max_depth=4) == [[[[1]]]]
    with pytest.raises(PickleLimitError, match="nested deeper than 3 levels"):
        parse_pickle(nested, max_depth=3)


def test_dup_amplification_is_charged():
    """8 bytes of stack per 1-byte DUP: within the budget for the pickle's size, refused beyond."""
    data = _p(EMPTY_LIST, MARK, NONE, DUP * 200_000, APPENDS)
    assert len(parse_pickle(data)) == 200_001
    with pytest.raises(PickleLimitError):
        parse_pickle(data, max_memory=10**6)


def test_unknown_encoding_is_the_callers_error():
    with pytest.raises(LookupError):
        parse_pickle(pickle.dumps(1), encoding="no-such-codec")
