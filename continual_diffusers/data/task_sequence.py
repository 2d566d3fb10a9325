"""The task sequence in memory: `Task` and `TaskSequence`, validated on construction, and `tasks_from_dict`, which
validates the `{task_id: {"images": ..., "labels": ...}}` layout (the legacy file format's, and Python users').

Each problem is one `TaskFileError` naming task, field and what is wrong. Nothing is silently fixed; labels stay
1-D even for a 1-sample task (the earlier `np.squeeze` made them 0-d). Task ids are ints from 1 to `MAX_TASK_ID`,
class ids ints from 0 to `MAX_CLASS_ID` (the class-embedding table has max + 1 rows), images at least 1×1.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

import numpy as np

from continual_diffusers.data.lazy import LazyImages
from continual_diffusers.data.pickle_values import short_repr
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.logging import get_logger

logger = get_logger(__name__)

LabelKind = Literal["class", "text", "none"]
MAX_TASK_ID = 10**9
MAX_CLASS_ID = 10**6 - 1  # num_classes = max class id + 1 sizes the class-embedding table

_show = short_repr  # task ids and keys from a file in messages: bounded, never recursing deeply


class TaskFileError(UserInputError):
    """A task file (or task dict) is malformed; the message names the task, the field and the problem."""


def refuse_field(task_id: Any, field: str, what: str) -> NoReturn:
    """Raise the `TaskFileError` for one field of one task."""
    raise TaskFileError(f"task {_show(task_id)}, field '{field}': {what}")


@dataclass(frozen=True, eq=False)
class Task:
    """One task of the sequence: images and optional per-image labels. Validated (and normalised) on construction.

    Attributes:
        task_id: int >= 1; tasks run in increasing id order.
        images: uint8 (N, H, W, C) with C in {1, 3}. A list of (H, W, C) uint8 arrays of one shape is stacked.
            A `lazy.LazyImages` (a task folder's images, read batch by batch) is kept as is.
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
            refuse_field(
                task_id, "task_id", f"task ids must be ints >= 1, got {type(task_id).__name__} {_show(task_id)}"
            )
        if task_id > MAX_TASK_ID:
            refuse_field(task_id, "task_id", f"task ids must be at most {MAX_TASK_ID}")
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
    if isinstance(images, LazyImages) or (isinstance(images, np.ndarray) and images.dtype != object):
        array = images
    elif isinstance(images, list | tuple | np.ndarray):
        array = _stack_images(task_id, list(images))
    else:
        refuse_field(
            task_id, "images", f"expected a uint8 (N, H, W, C) array or a list of arrays, got {type(images).__name__}"
        )
    if array.dtype != np.uint8:
        refuse_field(task_id, "images", f"must be uint8 (0..255), got {array.dtype}")
    if array.ndim != 4:
        refuse_field(task_id, "images", f"must be 4-D (N, H, W, C), got shape {array.shape}")
    if len(array) == 0:
        refuse_field(task_id, "images", "the task has no images")
    if array.shape[-1] not in (1, 3):
        refuse_field(task_id, "images", f"must be channels-last with 1 or 3 channels, got shape {array.shape}")
    if 0 in array.shape[1:3]:
        refuse_field(task_id, "images", f"images must be at least 1x1 pixels, got shape {array.shape}")
    return array


def _stack_images(task_id: int, items: list) -> np.ndarray:
    if not items:
        refuse_field(task_id, "images", "the task has no images")
    for i, item in enumerate(items):
        if not isinstance(item, np.ndarray):
            refuse_field(task_id, "images", f"image {i} is a {type(item).__name__}, expected an (H, W, C) uint8 array")
        if item.dtype != np.uint8:
            refuse_field(task_id, "images", f"must be uint8 (0..255), image {i} is {item.dtype}")
        if item.shape != items[0].shape:
            what = f"images differ in shape: image 0 is {items[0].shape}, image {i} is {item.shape}"
            refuse_field(task_id, "images", f"{what}; resize them to one shape first")
    return np.stack(items)


def _coerce_labels(task_id: int, labels: Any, num_images: int) -> np.ndarray | None:
    if labels is None:
        return None
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1:
            what = f"must be 1-D (one label per image), got shape {labels.shape}"
            refuse_field(task_id, "labels", f"{what}; several labels or captions per image are not supported")
        array = _labels_from_list(task_id, labels.tolist()) if labels.dtype == object else labels
    elif isinstance(labels, list | tuple):
        array = _labels_from_list(task_id, list(labels))
    else:
        refuse_field(
            task_id, "labels", f"expected a list or 1-D array with one label per image, got {type(labels).__name__}"
        )
    kind = array.dtype.kind
    if kind == "f":
        refuse_field(task_id, "labels", f"float labels ({array.dtype}) are not class ids; use integer class ids")
    if kind not in "iuU":
        refuse_field(task_id, "labels", f"unsupported dtype {array.dtype}; use int class ids or str captions")
    if kind in "iu" and array.size:
        _check_class_ids(task_id, int(array.min()), int(array.max()))
    if len(array) != num_images:
        refuse_field(task_id, "labels", f"has {len(array)} labels for {num_images} images")
    return array if kind == "U" else array.astype(np.int64, copy=False)


def _label_type(item: Any) -> str:
    if isinstance(item, bool | np.bool_):  # bool is an int subclass, but True is not a class id
        return "bool"
    for types, name in ((int | np.integer, "int"), (str, "str"), (float | np.floating, "float")):
        if isinstance(item, types):
            return name
    return "list" if isinstance(item, list | tuple | np.ndarray) else type(item).__name__


def _check_class_ids(task_id: int, smallest: int, largest: int) -> None:
    if smallest < 0:
        refuse_field(task_id, "labels", f"class ids must be >= 0, got {_show(smallest)}")
    if largest > MAX_CLASS_ID:
        what = f"class ids must be at most {MAX_CLASS_ID} (the model has one embedding per id up to the largest)"
        refuse_field(task_id, "labels", f"{what}, got {_show(largest)}; renumber the classes from 0")


def _labels_from_list(task_id: int, items: list) -> np.ndarray:
    kinds = {_label_type(item) for item in items}
    if "list" in kinds:
        refuse_field(
            task_id, "labels", "a list per image (e.g. several captions) is not supported; give one label each"
        )
    if len(kinds) > 1:
        refuse_field(
            task_id, "labels", f"labels of mixed types ({', '.join(sorted(kinds))}); use all ints or all strings"
        )
    kind = kinds.pop() if kinds else "int"
    if kind not in ("int", "str"):
        refuse_field(task_id, "labels", f"{kind} labels are not supported; use integer class ids or caption strings")
    if kind == "int" and items:  # checked before np.asarray, which raises OverflowError past int64
        _check_class_ids(task_id, int(min(items)), int(max(items)))
    return np.asarray(items, dtype=np.int64 if kind == "int" else str).reshape(len(items))


@dataclass(frozen=True, eq=False)
class TaskSequence:
    """The tasks of one run, sorted by id; all share channels, image size and label kind (checked on construction).

    Attributes:
        tasks: the tasks (any order; kept sorted by id).
        class_order: optional: the class order the tasks were cut from (task 1 holds the first classes); recorded
            in the task file and echoed in a run's config.json and report. Distinct class ids; with class labels,
            every class of every task must be in it.
        class_names: optional: the name of each class id (index = class id).

    Raises:
        TaskFileError: no tasks, a duplicated id, or tasks that disagree on channels, size or label kind; a bad
            class order or class names.
    """

    tasks: tuple[Task, ...]
    class_order: tuple[int, ...] | None = None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        tasks = tuple(sorted(self.tasks, key=lambda task: task.task_id))
        if not tasks:
            raise TaskFileError("no tasks: a task sequence needs at least one task")
        first = tasks[0]
        for previous, task in zip(tasks, tasks[1:], strict=False):
            if task.task_id == previous.task_id:
                refuse_field(task.task_id, "task_id", "appears more than once")
            if task.images.shape[1:] != first.images.shape[1:]:
                what = f"(H, W, C) is {task.images.shape[1:]} but task {first.task_id} has {first.images.shape[1:]}"
                refuse_field(task.task_id, "images", f"{what}; all tasks must share image size and channels")
            if task.label_kind != first.label_kind:
                what = f"label kind is '{task.label_kind}' but task {first.task_id} has '{first.label_kind}'"
                refuse_field(
                    task.task_id, "labels", f"{what}; all tasks must use one kind (class ids, captions or none)"
                )
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "class_order", _coerce_class_order(self.class_order))
        object.__setattr__(self, "class_names", _coerce_class_names(self.class_names))
        if self.label_kind == "class":
            used = {c for task in tasks for c in task.classes()}
            if self.class_order is not None and not used <= set(self.class_order):
                missing = sorted(used - set(self.class_order))[:10]
                raise TaskFileError(
                    f"class_order {_show(list(self.class_order))} lacks classes {missing} used by tasks"
                )
            if self.class_names is not None and max(used) >= len(self.class_names):
                what = f"{len(self.class_names)} class names, but the tasks use class id {max(used)}"
                raise TaskFileError(f"class_names: {what}; give one name per class id")

    def with_tasks(self, tasks) -> TaskSequence:
        """Another sequence of `tasks` with this one's class order and names (e.g. a train/test split)."""
        return TaskSequence(tuple(tasks), self.class_order, self.class_names)

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


def _coerce_class_order(order: Any) -> tuple[int, ...] | None:
    if order is None:
        return None
    if isinstance(order, np.ndarray):
        if order.ndim != 1 or order.dtype.kind not in "iu":
            raise TaskFileError(f"class_order must be a 1-D array of class ids, got {order.dtype} {order.shape}")
        order = order.tolist()
    if not isinstance(order, list | tuple) or not all(_label_type(c) == "int" for c in order):
        raise TaskFileError("class_order must be a list of int class ids")
    if not order:
        raise TaskFileError("class_order is empty")
    if len(set(order)) != len(order):
        raise TaskFileError("class_order lists a class more than once")
    if min(order) < 0 or max(order) > MAX_CLASS_ID:
        raise TaskFileError(f"class_order holds ids outside 0..{MAX_CLASS_ID}")
    return tuple(int(c) for c in order)


def _coerce_class_names(names: Any) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, np.ndarray):
        if names.ndim != 1 or names.dtype.kind != "U":
            raise TaskFileError(f"class_names must be a 1-D str array, got {names.dtype} {names.shape}")
        names = names.tolist()
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise TaskFileError("class_names must be a list of str")
    if len(names) > MAX_CLASS_ID + 1:
        raise TaskFileError(f"class_names lists {len(names)} names; class ids go up to {MAX_CLASS_ID}")
    return tuple(str(n) for n in names)


@contextlib.contextmanager
def prefixed_errors(source: str) -> Iterator[None]:
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
    with prefixed_errors(source):
        for task_id, entry in data.items():
            if not isinstance(entry, Mapping):
                refuse_field(
                    task_id, "images", f"the task must be a dict {{'images', 'labels'}}, got {type(entry).__name__}"
                )
            unknown = [key for key in entry if not (isinstance(key, str) and key in ("images", "labels"))]
            if unknown:
                field = unknown[0] if isinstance(unknown[0], str) else _show(unknown[0])
                refuse_field(task_id, field[:60], "unknown field; a task has 'images' and optional 'labels'")
            if "images" not in entry:
                refuse_field(task_id, "images", "missing")
            tasks.append(Task(task_id, entry["images"], entry.get("labels")))
        sequence = TaskSequence(tuple(tasks))
    ids = sequence.task_ids
    missing = ids[-1] - len(ids)  # ids are distinct and >= 1
    if missing:
        shown = ", ".join(map(str, _missing_ids(ids, 10))) + (", ..." if missing > 10 else "")
        logger.warning(
            "%s: task ids %s are not contiguous (missing [%s]); tasks run in sorted order", source, ids, shown
        )
    return sequence


def _missing_ids(ids: list[int], limit: int) -> list[int]:
    """The first `limit` ids in 1..max(ids) that are not in the sorted, distinct `ids` (never expands the range)."""
    gaps = (range(previous + 1, current) for previous, current in zip([0, *ids], ids))
    return list(itertools.islice(itertools.chain.from_iterable(gaps), limit))
