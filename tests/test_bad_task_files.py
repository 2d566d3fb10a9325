"""Malformed task files: each gives one `TaskFileError` naming the problem, and `info` turns it into one stderr line.

Every case writes its file into tmp_path and returns (path, the text the error message must contain). Task-level
problems must name task and field ("task 2, field 'labels'"); file-level problems name the file. Besides plain
mistakes, the cases include what used to escape the loaders as other exceptions (OverflowError, LookupError,
RecursionError, the int-to-str digit limit, zip members that are not .npy, encrypted or of an unknown compression)
and what used to pass validation (a uint64 label of 2^64 - 1, absurd class ids, images of height or width 0).
Code-execution payloads and memory bombs are in tests/test_hostile_task_files.py.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import zipfile

import hostile_files as h
import numpy as np
import pytest

from continual_diffusers.data import TaskFileError, load_tasks, tasks_from_dict
from continual_diffusers.data.__main__ import main
from continual_diffusers.data.npz import MAX_BYTES_ENV
from continual_diffusers.data.tasks import FORMAT


def imgs(n: int = 2, size: int = 4, channels: int = 3) -> np.ndarray:
    return np.zeros((n, size, size, channels), dtype=np.uint8)


def legacy(path, tasks) -> str:
    np.savez(path, data_structure=pickle.dumps(tasks))
    return str(path)


def safe(path, **arrays) -> str:
    np.savez(path, format=np.array(FORMAT), **arrays)
    return str(path)


def not_npz(path):
    path.write_text("hello, I am not a zip archive\n")
    return str(path)


def truncated(path):
    safe(path, **{"task_1/images": imgs(50, 16)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return str(path)


def npy_file(path):
    np.save(path.with_suffix(".npy"), imgs())
    return str(path.with_suffix(".npy"))


class Evil:
    def __reduce__(self):
        return os.system, ("true",)


def assembled(path, labels_ops: bytes) -> str:
    """A legacy file whose task 1 labels are the given pickle opcodes (tests/hostile_files.py's assembler)."""
    return h.write_legacy(path, h.task_file_pickle(labels_ops))


def legacy_with_key(path, key_ops: bytes) -> str:
    pickled = h.PROTO2 + h.EMPTY_DICT + key_ops + h.EMPTY_DICT + h.text("images") + h.images_ops() + h.SETITEM
    return h.write_legacy(path, pickled + h.SETITEM + h.STOP)


FORMAT_MEMBER = {"name": "format.npy", "data": h.npy_bytes(np.array(FORMAT))}


def zipped(path, name: str = "task_1/images.npy", data: bytes | None = None, **stated) -> str:
    """A safe-format archive with one more member, stating whatever `stated` says (method, flags, file_size)."""
    data = h.npy_bytes(imgs()) if data is None else data
    return h.write_zip(path, [FORMAT_MEMBER, {"name": name, "data": data, **stated}])


def npy_v3(path) -> str:
    data = bytearray(h.npy_bytes(imgs()))
    data[6:8] = b"\x03\x00"
    return zipped(path, data=bytes(data))


def npy_with_header(path, header: str) -> str:
    header = header.encode().ljust(118) + b"\n"
    return zipped(path, data=b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + bytes(96))


def crc_mismatch(path) -> str:
    data = bytearray(h.npy_bytes(imgs()))
    return zipped(path, data=bytes(data[:-1]) + b"\x01", crc=zipfile.crc32(bytes(data)))


def zip64_archive(path, claimed_members: int | None = None) -> str:
    """A safe task file whose end of central directory is the zip64 record (zipfile writes it for > 65,535
    members; here for any), optionally claiming `claimed_members` members."""
    limit, zipfile.ZIP_FILECOUNT_LIMIT = zipfile.ZIP_FILECOUNT_LIMIT, 0
    try:
        safe(path, **{"task_1/images": imgs()})
    finally:
        zipfile.ZIP_FILECOUNT_LIMIT = limit
    data = bytearray(path.read_bytes())
    record = data.rindex(b"PK\x06\x06")
    if claimed_members is not None:
        data[record + 24 : record + 40] = struct.pack("<QQ", claimed_members, claimed_members)
    path.write_bytes(bytes(data))
    return str(path)


def deep_tuple_id(depth: int) -> bytes:
    return h.EMPTY_TUPLE + h.TUPLE1 * depth


# (case id, builder(path) -> file, expected message fragment)
CASES = [
    ("missing_file", lambda p: str(p), "file not found"),
    ("not_an_npz", not_npz, "not a readable .npz file"),
    ("truncated_zip", truncated, "not a readable .npz file"),
    ("npy_not_npz", npy_file, "a single .npy array, not an .npz"),
    ("no_format_key", lambda p: (np.savez(p, images=imgs()), str(p))[1], "not a task file"),
    ("both_format_keys", lambda p: safe(p, data_structure=np.bytes_(b"x")), "has both 'format' and"),
    ("unknown_version", lambda p: (np.savez(p, format=np.array("continual-diffusers/tasks-v9")), str(p))[1],
     "unsupported task-file format 'continual-diffusers/tasks-v9'"),
    ("unexpected_safe_key", lambda p: safe(p, **{"task_1/images": imgs(), "extra": imgs()}), "unexpected key 'extra'"),
    ("safe_id_not_int", lambda p: safe(p, **{"task_one/images": imgs()}), "task 'one', field 'task_id'"),
    ("safe_id_zero", lambda p: safe(p, **{"task_0/images": imgs()}), "task 0, field 'task_id'"),
    ("safe_object_labels", lambda p: safe(p, **{"task_1/images": imgs(), "task_1/labels": np.array([1, "a"], object)}),
     "task 1, field 'labels': object arrays"),
    ("safe_labels_without_images", lambda p: safe(p, **{"task_1/labels": np.array([1])}),
     "task 1, field 'images': missing"),
    ("legacy_object_array", lambda p: (np.savez(p, data_structure=np.array({1: {}}, dtype=object)), str(p))[1],
     "key 'data_structure' is an object array"),
    ("legacy_unsafe_pickle", lambda p: legacy(p, {1: {"images": imgs(), "labels": [Evil()]}}),
     "refusing to unpickle 'posix.system'"),
    ("legacy_not_a_dict", lambda p: legacy(p, [imgs()]), "expected a dict {task_id"),
    ("no_tasks", lambda p: legacy(p, {}), "no tasks"),
    ("id_is_str", lambda p: legacy(p, {"1": {"images": imgs()}}), "task '1', field 'task_id'"),
    ("id_is_bool", lambda p: legacy(p, {True: {"images": imgs()}}), "task True, field 'task_id'"),
    ("id_negative", lambda p: legacy(p, {-1: {"images": imgs()}}), "task -1, field 'task_id'"),
    ("task_not_a_dict", lambda p: legacy(p, {1: imgs()}), "task 1, field 'images': the task must be a dict"),
    ("unknown_field", lambda p: legacy(p, {1: {"images": imgs(), "label": [0, 1]}}), "task 1, field 'label'"),
    ("missing_images", lambda p: legacy(p, {1: {"labels": [0, 1]}}), "task 1, field 'images': missing"),
    ("images_float", lambda p: legacy(p, {1: {"images": imgs().astype(np.float32)}}),
     "task 1, field 'images': must be uint8"),
    ("images_3d", lambda p: legacy(p, {1: {"images": imgs()[0]}}), "task 1, field 'images': must be 4-D"),
    ("images_channels_first", lambda p: legacy(p, {1: {"images": np.zeros((2, 3, 8, 8), np.uint8)}}),
     "task 1, field 'images': must be channels-last with 1 or 3 channels"),
    ("images_ragged", lambda p: legacy(p, {1: {"images": [imgs(1, 4)[0], imgs(1, 5)[0]]}}),
     "task 1, field 'images': images differ in shape"),
    ("images_list_of_lists", lambda p: legacy(p, {1: {"images": [[[0]]]}}), "task 1, field 'images': image 0 is a"),
    ("empty_task", lambda p: legacy(p, {1: {"images": imgs(0)}}), "task 1, field 'images': the task has no images"),
    ("empty_image_list", lambda p: legacy(p, {1: {"images": []}}), "task 1, field 'images': the task has no images"),
    ("labels_length", lambda p: legacy(p, {1: {"images": imgs(2), "labels": [0, 1, 2]}}),
     "task 1, field 'labels': has 3 labels for 2 images"),
    ("labels_2d", lambda p: legacy(p, {1: {"images": imgs(2), "labels": np.zeros((2, 1), np.int64)}}),
     "task 1, field 'labels': must be 1-D"),
    ("labels_0d", lambda p: legacy(p, {1: {"images": imgs(1), "labels": np.int64(3)}}),
     "task 1, field 'labels': expected a list or 1-D array"),
    ("labels_negative", lambda p: legacy(p, {1: {"images": imgs(2), "labels": [0, -1]}}),
     "task 1, field 'labels': class ids must be >= 0"),
    ("labels_float_array", lambda p: legacy(p, {1: {"images": imgs(2), "labels": np.array([0.0, 1.0])}}),
     "task 1, field 'labels': float labels"),
    ("labels_float_list", lambda p: legacy(p, {1: {"images": imgs(2), "labels": [0.0, 1.0]}}),
     "task 1, field 'labels': float labels"),
    ("labels_mixed", lambda p: legacy(p, {1: {"images": imgs(2), "labels": [0, "a dog"]}}),
     "task 1, field 'labels': labels of mixed types (int, str)"),
    ("labels_bool", lambda p: legacy(p, {1: {"images": imgs(2), "labels": [True, False]}}),
     "task 1, field 'labels': bool labels are not supported"),
    ("labels_bytes", lambda p: legacy(p, {1: {"images": imgs(2), "labels": np.array([b"a", b"b"])}}),
     "task 1, field 'labels': unsupported dtype"),
    ("labels_several_captions", lambda p: legacy(p, {1: {"images": imgs(2), "labels": [["a", "b"], ["c"]]}}),
     "task 1, field 'labels': a list per image"),
    ("inconsistent_channels", lambda p: legacy(p, {1: {"images": imgs()}, 2: {"images": imgs(channels=1)}}),
     "task 2, field 'images': (H, W, C) is (4, 4, 1) but task 1 has (4, 4, 3)"),
    ("inconsistent_size", lambda p: legacy(p, {1: {"images": imgs()}, 2: {"images": imgs(size=8)}}),
     "task 2, field 'images': (H, W, C) is (8, 8, 3)"),
    ("inconsistent_label_kinds", lambda p: legacy(p, {1: {"images": imgs(), "labels": [0, 1]}, 2: {"images": imgs()}}),
     "task 2, field 'labels': label kind is 'none' but task 1 has 'class'"),
    ("class_vs_text_labels", lambda p: legacy(p, {1: {"images": imgs(), "labels": [0, 1]},
                                                 2: {"images": imgs(), "labels": ["a", "b"]}}),
     "task 2, field 'labels': label kind is 'text'"),
    # exceptions the loaders used to let through (OverflowError, LookupError, RecursionError, int digit limit, zip)
    ("labels_int_2_70", lambda p: legacy(p, {1: {"images": imgs(1), "labels": [2**70]}}),
     "task 1, field 'labels': class ids must be at most 999999"),
    ("labels_complex_overflow", lambda p: assembled(p, h.glob("builtins", "complex") + h.integer(10**400)
                                                     + h.integer(0) + h.TUPLE2 + h.REDUCE), "OverflowError"),
    ("codec_lookup", lambda p: assembled(p, h.glob("_codecs", "encode") + h.text("x") + h.text("no-such-codec")
                                         + h.TUPLE2 + h.REDUCE), "_codecs.encode is called only with plain"),
    ("task_id_deep_tuple", lambda p: legacy_with_key(p, deep_tuple_id(200)), "nested deeper than 100 levels"),
    ("task_id_5000_digits", lambda p: legacy_with_key(p, h.integer(10**4999)),
     "task <an int of about 5000 digits>, field 'task_id': task ids must be at most 1000000000"),
    ("task_id_5000_digits_text", lambda p: h.write_legacy(p, b"(dp0\nL" + b"7" * 5000 + b"L\n(dp1\nss."),
     "not a valid pickle of plain data (ValueError: Exceeds the limit"),
    ("safe_task_id_5000_digits", lambda p: safe(p, **{f"task_{'7' * 5000}/images": imgs()}),
     "field 'task_id': task ids must be at most 1000000000, got a 5000-digit number"),
    ("task_id_over_cap", lambda p: legacy(p, {10**9 + 1: {"images": imgs()}}),
     "task 1000000001, field 'task_id': task ids must be at most 1000000000"),
    ("member_not_npy", lambda p: zipped(p, "notes.txt", b"hello"), "member 'notes.txt' is not an .npy array"),
    ("member_without_npy_magic", lambda p: zipped(p, data=b"hello, not an array"), "(no .npy magic)"),
    ("member_encrypted", lambda p: zipped(p, flags=1), "member 'task_1/images.npy' is encrypted"),
    ("member_unknown_compression", lambda p: zipped(p, method=99), "uses zip compression method 99"),
    ("member_bzip2", lambda p: zipped(p, method=12), "uses zip compression method 12"),
    ("zip64_member_count", lambda p: zip64_archive(p, 10**6), "the archive lists 1000000 members"),
    ("member_twice", lambda p: h.write_zip(p, [FORMAT_MEMBER, FORMAT_MEMBER]), "member 'format.npy' appears twice"),
    ("member_crc", crc_mismatch, "Bad CRC-32"),
    ("member_truncated", lambda p: zipped(p, data=h.npy_bytes(imgs())[:-10], file_size=len(h.npy_bytes(imgs()))),
     "ends after 86 of its 96 data bytes"),
    ("member_size_lie", lambda p: zipped(p, data=h.npy_header((10**6, 4, 4, 3), "|u1") + bytes(96)),
     "its header says shape (1000000, 4, 4, 3) of uint8 (48000000 bytes), but the archive states 96"),
    ("npy_version_3", npy_v3, "is .npy format 3.0"),
    ("npy_header_code", lambda p: npy_with_header(p, "{'descr': __import__('os').system('true'), "
                                                     "'fortran_order': False, 'shape': (2,)}"), "invalid .npy header"),
    ("npy_structured_dtype", lambda p: zipped(p, data=h.npy_bytes(np.zeros(2, [("a", "<i4")]))),
     "is not a plain numeric or string dtype"),
    ("npy_datetime_dtype", lambda p: zipped(p, data=h.npy_bytes(np.zeros(2, "M8[s]"))), "not a plain numeric"),
    ("a_directory", lambda p: (p.mkdir(), str(p))[1], "not a regular file"),
    ("safe_code_point", lambda p: safe(p, **{"task_1/images": imgs(1), "task_1/labels": np.frombuffer(
        struct.pack("<I", 0x110000), "<U1")}), "holds code point 0x110000"),
    ("legacy_code_point", lambda p: assembled(p, h.array((1,), h.dtype("U1", "<"), struct.pack("<I", 0x110000))),
     "holds code point 0x110000"),
    ("legacy_out_of_band", lambda p: assembled(p, b"\x97"), "out-of-band buffers"),
    ("legacy_trailing_bytes", lambda p: h.write_legacy(p, pickle.dumps({1: {"images": imgs()}}) + b"xx"),
     "2 bytes after the STOP opcode"),
    ("legacy_range", lambda p: assembled(p, h.glob("builtins", "range") + h.integer(2) + h.TUPLE1 + h.REDUCE),
     "refusing to unpickle 'builtins.range'"),
    # validation bypasses: labels that do not fit int64 or the class-embedding table, empty images
    ("labels_uint64_max", lambda p: legacy(p, {1: {"images": imgs(1), "labels": np.array([2**64 - 1], np.uint64)}}),
     "class ids must be at most 999999 (the model has one embedding per id up to the largest), got 184467440737"),
    ("safe_labels_uint64_max", lambda p: safe(p, **{"task_1/images": imgs(1),
                                                   "task_1/labels": np.array([2**64 - 1], np.uint64)}),
     "task 1, field 'labels': class ids must be at most 999999"),
    ("labels_class_id_cap", lambda p: legacy(p, {1: {"images": imgs(2), "labels": [0, 10**6]}}),
     "class ids must be at most 999999"),
    ("labels_int_2_63", lambda p: legacy(p, {1: {"images": imgs(1), "labels": [2**63]}}),
     "class ids must be at most 999999"),
    ("images_height_0", lambda p: legacy(p, {1: {"images": np.zeros((1, 0, 4, 3), np.uint8)}}),
     "task 1, field 'images': images must be at least 1x1 pixels, got shape (1, 0, 4, 3)"),
    ("images_width_0", lambda p: safe(p, **{"task_1/images": np.zeros((1, 4, 0, 1), np.uint8)}),
     "task 1, field 'images': images must be at least 1x1 pixels"),
    ("images_list_height_0", lambda p: legacy(p, {1: {"images": [np.zeros((0, 4, 3), np.uint8)]}}),
     "images must be at least 1x1 pixels"),
]  # fmt: skip


@pytest.fixture(params=CASES, ids=[case[0] for case in CASES])
def bad_file(request, tmp_path):
    _, build, expected = request.param
    return build(tmp_path / "tasks.npz"), expected


def test_load_raises_one_clear_task_file_error(bad_file):
    path, expected = bad_file
    with pytest.raises(TaskFileError, match=re.escape(expected)) as error:
        load_tasks(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    if expected.startswith("task "):
        assert re.search(r"task .+?, field '\w+': ", message)


def test_info_cli_prints_one_error_line_and_exits_2(bad_file, capsys):
    path, expected = bad_file
    assert main(["info", path]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err


# ---------------------------------------------------------------------------------------------------------------------
# Around the cases: caps and messages that need more than a file


def test_file_over_the_cap_names_the_variable_that_raises_it(tmp_path, monkeypatch):
    path = safe(tmp_path / "tasks.npz", **{"task_1/images": imgs(50, 16)})
    monkeypatch.setenv(MAX_BYTES_ENV, "10000")
    with pytest.raises(TaskFileError, match=rf"more than the cap of 10000 bytes .*\${MAX_BYTES_ENV}"):
        load_tasks(path)
    assert len(load_tasks(path, max_bytes=10**6)) == 1
    monkeypatch.setenv(MAX_BYTES_ENV, "lots")
    assert main(["info", path]) == 2


def test_deep_task_id_from_python_is_shown_bounded():
    """A task id too deep for repr() (RecursionError) given in-process: the message shows it abbreviated."""
    task_id = ()
    for _ in range(5000):  # repr() recurses once per level: RecursionError past ≈ 1000
        task_id = (task_id,)
    with pytest.raises(TaskFileError, match=re.escape("task ((((...),),),), field 'task_id': task ids must be ints")):
        tasks_from_dict({task_id: {"images": imgs()}})


def test_far_apart_ids_warn_without_expanding_the_range(tmp_path, caplog):
    path = legacy(tmp_path / "tasks.npz", {1: {"images": imgs()}, 10**9: {"images": imgs()}})
    with caplog.at_level("WARNING"):
        assert load_tasks(path).task_ids == [1, 10**9]
    assert "not contiguous (missing [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ...])" in caplog.text


def test_zip64_end_record_is_read(tmp_path):
    assert load_tasks(zip64_archive(tmp_path / "tasks.npz")).task_ids == [1]


@pytest.mark.parametrize("writer", [np.savez, np.savez_compressed])
def test_stored_deflated_and_fortran_arrays_load(tmp_path, writer):
    images = np.asfortranarray(np.random.default_rng(0).integers(0, 256, (3, 5, 4, 3), dtype=np.uint8))
    labels = np.array([3, 1, 2], dtype=">i4")
    writer(tmp_path / "safe.npz", format=np.array(FORMAT), **{"task_1/images": images, "task_1/labels": labels})
    writer(tmp_path / "legacy.npz", data_structure=pickle.dumps({1: {"images": images, "labels": labels}}))
    for name in ("safe.npz", "legacy.npz"):
        task = load_tasks(tmp_path / name)[1]
        np.testing.assert_array_equal(task.images, images)
        assert task.labels.tolist() == [3, 1, 2] and task.labels.dtype == np.int64
