"""Malformed task files: each gives one `TaskFileError` naming the problem, and `info` turns it into one stderr line.

Every case writes its file into tmp_path and returns (path, the text the error message must contain). Task-level
problems must name task and field ("task 2, field 'labels'"); file-level problems name the file.
"""

from __future__ import annotations

import os
import pickle
import re

import numpy as np
import pytest

from continual_diffusers.data import TaskFileError, load_tasks
from continual_diffusers.data.__main__ import main
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
        assert re.search(r"task \S+, field '\w+': ", message)


def test_info_cli_prints_one_error_line_and_exits_2(bad_file, capsys):
    path, expected = bad_file
    assert main(["info", path]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err
