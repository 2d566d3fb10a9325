"""Task files: safe round trip, legacy conversion, validation edge cases, and the restricted unpickler."""

from __future__ import annotations

import builtins
import collections
import logging
import os
import pickle
import subprocess

import numpy as np
import pytest

from continual_diffusers.data import (
    Task,
    TaskFileError,
    TaskSequence,
    convert_legacy,
    load_tasks,
    save_tasks,
    tasks_from_dict,
)
from continual_diffusers.data.tasks import FORMAT
from continual_diffusers.data.unpickle import UnsafePickleError, restricted_loads
from continual_diffusers.utils.errors import UserInputError


def images(n: int, size: int = 4, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


def write_legacy(path, tasks: dict, protocol: int = pickle.DEFAULT_PROTOCOL):
    np.savez(path, data_structure=pickle.dumps(tasks, protocol=protocol))
    return path


def assert_same(a: TaskSequence, b: TaskSequence) -> None:
    assert a.task_ids == b.task_ids
    for task_a, task_b in zip(a, b, strict=True):
        np.testing.assert_array_equal(task_a.images, task_b.images)
        assert task_a.images.dtype == task_b.images.dtype == np.uint8
        if task_a.labels is None:
            assert task_b.labels is None
        else:
            np.testing.assert_array_equal(task_a.labels, task_b.labels)
            assert task_a.labels.dtype == task_b.labels.dtype


def test_safe_round_trip(tmp_path):
    sequence = TaskSequence((Task(2, images(3, seed=2), np.array([2, 3, 3])), Task(1, images(5), [0, 1, 0, 1, 1])))
    path = tmp_path / "tasks.npz"
    save_tasks(path, sequence)
    loaded = load_tasks(path)
    assert_same(sequence, loaded)
    assert loaded.task_ids == [1, 2] and loaded[1].labels.dtype == np.int64
    assert (loaded.label_kind, loaded.num_classes, loaded.num_channels, loaded.image_size) == ("class", 4, 3, (4, 4))
    assert loaded[2].classes() == [2, 3] and len(loaded[1]) == 5
    assert os.listdir(tmp_path) == ["tasks.npz"]  # the temporary file was renamed, not left behind
    with np.load(path, allow_pickle=False) as npz:  # no pickles inside
        assert sorted(npz.files) == ["format", "task_1/images", "task_1/labels", "task_2/images", "task_2/labels"]
        assert str(npz["format"]) == FORMAT


def test_save_to_missing_folder_is_a_task_file_error(tmp_path):
    sequence = TaskSequence((Task(1, images(1)),))
    with pytest.raises(TaskFileError, match="cannot write"):
        save_tasks(tmp_path / "missing" / "tasks.npz", sequence)


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize(
    "labels_1, labels_2, kind",
    [
        (np.array([0, 1, 1]), np.array([2, 3]), "class"),
        ([0, 1, 1], [np.int64(2), 3], "class"),
        (["a cat", "a dog", "a cat"], np.array(["a car", "a ship"]), "text"),
        (None, None, "none"),
    ],
)
def test_legacy_to_safe_gives_identical_arrays(tmp_path, protocol, labels_1, labels_2, kind):
    task_1 = {"images": list(images(3))}  # a list of (H, W, C) arrays, as the legacy format allows
    task_2 = {"images": images(2, seed=1)}
    for task, labels in ((task_1, labels_1), (task_2, labels_2)):
        if labels is not None:
            task["labels"] = labels
    legacy = write_legacy(tmp_path / "legacy.npz", {1: task_1, 2: task_2}, protocol)
    converted = convert_legacy(legacy, tmp_path / "safe.npz")
    assert converted.label_kind == kind
    assert_same(load_tasks(legacy), load_tasks(tmp_path / "safe.npz"))
    np.testing.assert_array_equal(converted[1].images, np.stack(task_1["images"]))
    if kind != "none":
        np.testing.assert_array_equal(converted[1].labels, np.asarray(labels_1))
        assert converted[1].labels.dtype.kind == ("U" if kind == "text" else "i")


def test_one_sample_task_stays_one_dimensional(tmp_path):
    legacy = write_legacy(tmp_path / "legacy.npz", {1: {"images": images(1), "labels": [7]}})
    task = load_tasks(legacy)[1]
    assert task.labels.shape == (1,) and len(task) == 1 and task.classes() == [7]


def test_non_contiguous_ids_are_allowed_with_a_warning(tmp_path, caplog):
    legacy = write_legacy(tmp_path / "legacy.npz", {5: {"images": images(1)}, 2: {"images": images(2)}})
    with caplog.at_level(logging.WARNING):
        sequence = load_tasks(legacy)
    assert sequence.task_ids == [2, 5]
    assert "not contiguous (missing [1, 3, 4])" in caplog.text


def test_tasks_from_dict_accepts_numpy_integer_ids_and_keys_errors_list_valid_ids():
    sequence = tasks_from_dict({np.int64(1): {"images": images(2), "labels": np.array([1, 2], dtype=np.int32)}})
    assert sequence.task_ids == [1] and isinstance(sequence.task_ids[0], int)
    assert sequence[1].labels.dtype == np.int64
    with pytest.raises(KeyError, match=r"valid task ids: \[1\]"):
        sequence[3]


def test_grayscale_and_text_properties():
    sequence = TaskSequence((Task(1, images(2, channels=1), ["x", "y"]),))
    assert (sequence.num_channels, sequence.label_kind, sequence.num_classes) == (1, "text", 0)
    assert sequence[1].classes() == []


# ---------------------------------------------------------------------------------------------------------------------
# Restricted unpickling


class Payload:
    """Pickles as a call to `function(*args)`, the way a malicious task file would."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def payloads(marker: str) -> dict:
    command = f"touch {marker}"
    return {
        "os.system": Payload(os.system, command),
        "subprocess.call": Payload(subprocess.call, ["touch", marker]),
        "builtins.eval": Payload(builtins.eval, f"open({marker!r}, 'w').close()"),
        "builtins.exec": Payload(builtins.exec, f"open({marker!r}, 'w').close()"),
        "builtins.open": Payload(builtins.open, marker, "w"),
        "builtins.getattr": Payload(builtins.getattr, collections.OrderedDict(), "clear"),
        "builtins.__import__": Payload(builtins.__import__, "os"),
    }


@pytest.mark.parametrize("name", list(payloads("m")))
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_unsafe_globals_are_refused_and_nothing_runs(tmp_path, name, protocol):
    marker = tmp_path / "pwned"
    payload = payloads(str(marker))[name]
    legacy = write_legacy(tmp_path / "evil.npz", {1: {"images": images(1), "labels": [payload]}}, protocol)
    with pytest.raises(TaskFileError, match="refusing to unpickle") as error:
        load_tasks(legacy)
    refused = f"{payload.function.__module__}.{payload.function.__name__}"  # e.g. posix.system on Linux
    assert f"'{refused}'" in str(error.value) and str(legacy) in str(error.value)
    assert not marker.exists()


def test_refusal_message_names_the_global():
    with pytest.raises(UnsafePickleError, match=r"refusing to unpickle 'posix\.system': task files may contain only"):
        restricted_loads(pickle.dumps(Payload(os.system, "true")))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_and_numpy_arrays_round_trip(protocol):
    data = {
        "ints": [1, -2, 2**70],
        "floats": (1.5, float("inf")),
        "complex": 1 + 2j,
        "text": "caption",
        "bytes": b"\x00\xff",
        "empty_bytes": b"",
        "bytearray": bytearray(b"ab"),
        "set": {1, 2},
        "frozenset": frozenset({"a"}),
        "ordered": collections.OrderedDict(b=1, a=2),
        "uint8": images(2),
        "strings": np.array(["a", "bc"]),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "scalar": np.int64(3),
        None: True,
    }
    loaded = restricted_loads(pickle.dumps(data, protocol=protocol))
    for key, value in data.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(loaded[key], value)
            assert loaded[key].dtype == value.dtype
        else:
            assert loaded[key] == value and type(loaded[key]) is type(value)


def test_invalid_pickle_bytes_are_a_user_error():
    with pytest.raises(UserInputError, match="not a valid pickle"):
        restricted_loads(b"not a pickle")
