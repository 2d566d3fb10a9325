"""Task files: the `Task` / `TaskSequence` containers, their validation, and the two on-disk formats.

- **safe** (written by `save_tasks`, no pickles): an `.npz` with `format` = "continual-diffusers/tasks-v1",
  `task_{id}/images` uint8 (N, H, W, C) and optional `task_{id}/labels`, int64 (N,) class ids or unicode (N,)
  captions.
- **legacy** (the earlier implementation's files): `np.savez(path, data_structure=pickle.dumps(tasks))` with
  `tasks = {task_id: {"images": ..., "labels": ...}}`. The pickle is read by `restricted_loads`, which can only
  build plain data; numpy's pickle loading stays switched off.

Validation happens when a `Task` is built: each problem is one `TaskFileError` naming task, field and what is wrong.
Nothing is silently fixed; labels stay 1-D even for a 1-sample task (the earlier `np.squeeze` made them 0-d).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np

from continual_diffusers.data.unpickle import UnsafePickleError, restricted_loads
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.logging import get_logger

logger = get_logger(__name__)

FORMAT = "continual-diffusers/tasks-v1"
LEGACY_KEY = "data_structure"
LabelKind = Literal["class", "text", "none"]
_SAFE_KEY = re.compile(r"task_(-?[0-9]+|[^/]*)/(images|labels)")
_CANONICAL_INT = re.compile(r"-?(0|[1-9][0-9]*)")


class TaskFileError(UserInputError):
    """A task file (or task dict) is malformed; the message names the task, the field and the problem."""


def _fail(task_id: Any, field: str, what: str) -> NoReturn:
    raise TaskFileError(f"task {task_id!r}, field '{field}': {what}")


@dataclass(frozen=True, eq=False)
class Task:
    """One task of the sequence: images and optional per-image labels. Validated (and normalised) on construction.

    Attributes:
        task_id: int >= 1; tasks run in increasing id order.
        images: uint8 (N, H, W, C) with C in {1, 3}. A list of (H, W, C) uint8 arrays of one shape is stacked.
        labels: int64 (N,) global class ids >= 0, unicode (N,) captions (dtype kind 'U'), or None.
            Lists of ints or strings are converted.

    Raises:
        TaskFileError: any field is malformed.
    """

    task_id: int
    images: np.ndarray
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        task_id = self.task_id
        if isinstance(task_id, bool | np.bool_) or not isinstance(task_id, int | np.integer) or task_id < 1:
            _fail(task_id, "task_id", f"task ids must be ints >= 1, got {type(task_id).__name__} {task_id!r}")
        images = _coerce_images(task_id, self.images)
        object.__setattr__(self, "task_id", int(task_id))
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", _coerce_labels(task_id, self.labels, len(images)))

    @property
    def label_kind(self) -> LabelKind:
        if self.labels is None:
            return "none"
        return "text" if self.labels.dtype.kind == "U" else "class"

    def __len__(self) -> int:
        return len(self.images)

    def classes(self) -> list[int]:
        """Sorted unique class ids of this task (empty unless `label_kind == "class"`)."""
        return [int(c) for c in np.unique(self.labels)] if self.label_kind == "class" else []


def _coerce_images(task_id: int, images: Any) -> np.ndarray:
    if isinstance(images, np.ndarray) and images.dtype != object:
        array = images
    elif isinstance(images, list | tuple | np.ndarray):
        array = _stack_images(task_id, list(images))
    else:
        _fail(
            task_id, "images", f"expected a uint8 (N, H, W, C) array or a list of arrays, got {type(images).__name__}"
        )
    if array.dtype != np.uint8:
        _fail(task_id, "images", f"must be uint8 (0..255), got {array.dtype}")
    if array.ndim != 4:
        _fail(task_id, "images", f"must be 4-D (N, H, W, C), got shape {array.shape}")
    if len(array) == 0:
        _fail(task_id, "images", "the task has no images")
    if array.shape[-1] not in (1, 3):
        _fail(task_id, "images", f"must be channels-last with 1 or 3 channels, got shape {array.shape}")
    return array


def _stack_images(task_id: int, items: list) -> np.ndarray:
    if not items:
        _fail(task_id, "images", "the task has no images")
    for i, item in enumerate(items):
        if not isinstance(item, np.ndarray):
            _fail(task_id, "images", f"image {i} is a {type(item).__name__}, expected an (H, W, C) uint8 array")
        if item.dtype != np.uint8:
            _fail(task_id, "images", f"must be uint8 (0..255), image {i} is {item.dtype}")
        if item.shape != items[0].shape:
            what = f"images differ in shape: image 0 is {items[0].shape}, image {i} is {item.shape}"
            _fail(task_id, "images", f"{what}; resize them to one shape first")
    return np.stack(items)


def _coerce_labels(task_id: int, labels: Any, num_images: int) -> np.ndarray | None:
    if labels is None:
        return None
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1:
            what = f"must be 1-D (one label per image), got shape {labels.shape}"
            _fail(task_id, "labels", f"{what}; several labels or captions per image are not supported")
        array = _labels_from_list(task_id, labels.tolist()) if labels.dtype == object else labels
    elif isinstance(labels, list | tuple):
        array = _labels_from_list(task_id, list(labels))
    else:
        _fail(task_id, "labels", f"expected a list or 1-D array with one label per image, got {type(labels).__name__}")
    kind = array.dtype.kind
    if kind == "f":
        _fail(task_id, "labels", f"float labels ({array.dtype}) are not class ids; use integer class ids")
    if kind not in "iuU":
        _fail(task_id, "labels", f"unsupported dtype {array.dtype}; use int class ids or str captions")
    if kind in "iu" and array.size and array.min() < 0:
        _fail(task_id, "labels", f"class ids must be >= 0, got {array.min()}")
    if len(array) != num_images:
        _fail(task_id, "labels", f"has {len(array)} labels for {num_images} images")
    return array if kind == "U" else array.astype(np.int64, copy=False)


def _label_type(item: Any) -> str:
    if isinstance(item, bool | np.bool_):  # bool is an int subclass, but True is not a class id
        return "bool"
    for types, name in ((int | np.integer, "int"), (str, "str"), (float | np.floating, "float")):
        if isinstance(item, types):
            return name
    return "list" if isinstance(item, list | tuple | np.ndarray) else type(item).__name__


def _labels_from_list(task_id: int, items: list) -> np.ndarray:
    kinds = {_label_type(item) for item in items}
    if "list" in kinds:
        _fail(task_id, "labels", "a list per image (e.g. several captions) is not supported; give one label each")
    if len(kinds) > 1:
        _fail(task_id, "labels", f"labels of mixed types ({', '.join(sorted(kinds))}); use all ints or all strings")
    kind = kinds.pop() if kinds else "int"
    if kind not in ("int", "str"):
        _fail(task_id, "labels", f"{kind} labels are not supported; use integer class ids or caption strings")
    return np.asarray(items, dtype=np.int64 if kind == "int" else str).reshape(len(items))


@dataclass(frozen=True, eq=False)
class TaskSequence:
    """The tasks of one run, sorted by id; all share channels, image size and label kind (checked on construction).

    Raises:
        TaskFileError: no tasks, a duplicated id, or tasks that disagree on channels, size or label kind.
    """

    tasks: tuple[Task, ...]

    def __post_init__(self) -> None:
        tasks = tuple(sorted(self.tasks, key=lambda task: task.task_id))
        if not tasks:
            raise TaskFileError("no tasks: a task sequence needs at least one task")
        first = tasks[0]
        for previous, task in zip(tasks, tasks[1:], strict=False):
            if task.task_id == previous.task_id:
                _fail(task.task_id, "task_id", "appears more than once")
            if task.images.shape[1:] != first.images.shape[1:]:
                what = f"(H, W, C) is {task.images.shape[1:]} but task {first.task_id} has {first.images.shape[1:]}"
                _fail(task.task_id, "images", f"{what}; all tasks must share image size and channels")
            if task.label_kind != first.label_kind:
                what = f"label kind is '{task.label_kind}' but task {first.task_id} has '{first.label_kind}'"
                _fail(task.task_id, "labels", f"{what}; all tasks must use one kind (class ids, captions or none)")
        object.__setattr__(self, "tasks", tasks)

    @property
    def task_ids(self) -> list[int]:
        return [task.task_id for task in self.tasks]

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __getitem__(self, task_id: int) -> Task:
        for task in self.tasks:
            if task.task_id == task_id:
                return task
        raise KeyError(f"no task {task_id!r}; valid task ids: {self.task_ids}")

    @property
    def label_kind(self) -> LabelKind:
        return self.tasks[0].label_kind

    @property
    def num_channels(self) -> int:
        return int(self.tasks[0].images.shape[3])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) shared by all tasks."""
        return int(self.tasks[0].images.shape[1]), int(self.tasks[0].images.shape[2])

    @property
    def num_classes(self) -> int:
        """Max class id + 1 over all tasks (class ids are global); 0 unless `label_kind == "class"`."""
        if self.label_kind != "class":
            return 0
        return max(int(task.labels.max()) for task in self.tasks) + 1


@contextlib.contextmanager
def _prefixed(source: str) -> Iterator[None]:
    """Prefix validation errors with the file (or dict) they came from."""
    try:
        yield
    except TaskFileError as error:
        raise TaskFileError(f"{source}: {error}") from None


def tasks_from_dict(data: Mapping, source: str = "<dict>") -> TaskSequence:
    """Validate a `{task_id: {"images": ..., "labels": ...}}` mapping (the legacy layout) into a `TaskSequence`.

    Args:
        data: task id (int >= 1) → dict with "images" (uint8 (N, H, W, C) or list of (H, W, C)) and optional
            "labels" (N ints or N strings).
        source: where the mapping came from, used as the prefix of error messages.

    Raises:
        TaskFileError: the mapping, a task or a field is malformed (one message naming task and field).
    """
    if not isinstance(data, Mapping):
        raise TaskFileError(
            f"{source}: expected a dict {{task_id: {{'images', 'labels'}}}}, got {type(data).__name__}"
        )
    tasks = []
    with _prefixed(source):
        for task_id, entry in data.items():
            if not isinstance(entry, Mapping):
                _fail(task_id, "images", f"the task must be a dict {{'images', 'labels'}}, got {type(entry).__name__}")
            unknown = sorted(str(key) for key in entry if key not in ("images", "labels"))
            if unknown:
                _fail(task_id, unknown[0], "unknown field; a task has 'images' and optional 'labels'")
            if "images" not in entry:
                _fail(task_id, "images", "missing")
            tasks.append(Task(task_id, entry["images"], entry.get("labels")))
        sequence = TaskSequence(tuple(tasks))
    missing = sorted(set(range(1, max(sequence.task_ids) + 1)) - set(sequence.task_ids))
    if missing:
        ids = sequence.task_ids
        logger.warning(
            "%s: task ids %s are not contiguous (missing %s); tasks run in sorted order", source, ids, missing
        )
    return sequence


def _read_npz(path: str | os.PathLike) -> dict[str, np.ndarray | None]:
    """All arrays of an .npz, loaded without pickle; an object array (which would need pickle) maps to None."""
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise TaskFileError(f"{path}: a single .npy array, not an .npz archive of tasks")
        with npz:
            arrays: dict[str, np.ndarray | None] = {}
            for key in npz.files:
                try:
                    arrays[key] = npz[key]
                except ValueError as error:
                    if "allow_pickle" not in str(error):
                        raise
                    arrays[key] = None
            return arrays
    except TaskFileError:
        raise
    except FileNotFoundError:
        raise TaskFileError(f"{path}: file not found") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as error:
        # np.load takes any non-zip, non-.npy file for a pickle; its hint to switch pickle loading on is not for us.
        reason = (
            "not a zip archive" if "pickle" in str(error) else " ".join(f"{type(error).__name__}: {error}".split())
        )
        raise TaskFileError(f"{path}: not a readable .npz file ({reason})") from None


def _from_safe(arrays: dict[str, np.ndarray | None], path: str) -> TaskSequence:
    version = arrays.pop("format")
    if version is None or version.ndim != 0 or version.dtype.kind != "U":
        raise TaskFileError(f"{path}: key 'format' must be a string like {FORMAT!r}")
    if str(version) != FORMAT:
        raise TaskFileError(f"{path}: unsupported task-file format {str(version)!r}; this version reads {FORMAT!r}")
    entries: dict[Any, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        match = _SAFE_KEY.fullmatch(key)
        if match is None:
            raise TaskFileError(f"{path}: unexpected key {key!r}; expected 'format' and 'task_<id>/images|labels'")
        raw_id, field = match.groups()
        task_id = int(raw_id) if _CANONICAL_INT.fullmatch(raw_id) else raw_id
        if value is None:
            with _prefixed(path):
                _fail(task_id, field, "object arrays (which need pickle) are not allowed; use int64 or str labels")
        entries.setdefault(task_id, {})[field] = value
    return tasks_from_dict(entries, path)


def _from_legacy(arrays: dict[str, np.ndarray | None], path: str) -> TaskSequence:
    pickled = arrays[LEGACY_KEY]
    if pickled is None:
        what = f"key '{LEGACY_KEY}' is an object array, which numpy could only read by unpickling it unrestricted"
        raise TaskFileError(f"{path}: {what}; save {LEGACY_KEY}=pickle.dumps(tasks) or use save_tasks")
    if pickled.ndim != 0 or pickled.dtype.kind != "S":
        raise TaskFileError(f"{path}: key '{LEGACY_KEY}' must hold pickled bytes, got {pickled.dtype} {pickled.shape}")
    if len(arrays) > 1:
        raise TaskFileError(f"{path}: unexpected keys {sorted(set(arrays) - {LEGACY_KEY})} next to '{LEGACY_KEY}'")
    try:
        data = restricted_loads(pickled.item())
    except UnsafePickleError as error:
        raise TaskFileError(f"{path}: {error}") from None
    except UserInputError as error:
        raise TaskFileError(f"{path}: key '{LEGACY_KEY}' is {error}") from None
    return tasks_from_dict(data, path)


def load_tasks(path: str | os.PathLike) -> TaskSequence:
    """Load and validate a task file in the safe or the legacy format (detected from its keys).

    Raises:
        TaskFileError: the file is missing, unreadable, unsafe or malformed (one message naming task and field).
    """
    arrays = _read_npz(path)
    source = os.fspath(path)
    if "format" in arrays and LEGACY_KEY in arrays:
        raise TaskFileError(f"{source}: has both 'format' and '{LEGACY_KEY}' keys; expected one of the two formats")
    if "format" in arrays:
        sequence = _from_safe(arrays, source)
    elif LEGACY_KEY in arrays:
        sequence = _from_legacy(arrays, source)
    else:
        what = f"expected a 'format' key (continual-diffusers) or '{LEGACY_KEY}' (legacy), found {sorted(arrays)[:5]}"
        raise TaskFileError(f"{source}: not a task file: {what}")
    logger.info("loaded %d task(s) %s from %s", len(sequence), sequence.task_ids, source)
    return sequence


def save_tasks(path: str | os.PathLike, tasks: TaskSequence) -> None:
    """Write `tasks` in the safe format, atomically (a temporary file in the same folder, then `os.replace`).

    Raises:
        TaskFileError: the file cannot be written.
    """
    arrays = {"format": np.array(FORMAT)}
    for task in tasks:
        arrays[f"task_{task.task_id}/images"] = task.images
        if task.labels is not None:
            arrays[f"task_{task.task_id}/labels"] = task.labels
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as file:
            np.savez(file, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a data file should be readable like any other
        os.replace(tmp, path)
    except OSError as error:
        raise TaskFileError(f"{path}: cannot write ({error.strerror or error})") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def convert_legacy(src: str | os.PathLike, dst: str | os.PathLike) -> TaskSequence:
    """Read a legacy (pickled) task file, validate it, and write it to `dst` in the safe format."""
    sequence = load_tasks(src)
    save_tasks(dst, sequence)
    logger.info("wrote %d task(s) to %s", len(sequence), dst)
    return sequence
