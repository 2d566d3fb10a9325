"""Task files: the on-disk formats of a `TaskSequence` (`task_sequence`), loading and saving them.

- **safe** (written by `save_tasks`, no pickles): an `.npz` with `format` = "continual-diffusers/tasks-v1",
  `task_{id}/images` uint8 (N, H, W, C) and optional `task_{id}/labels`, int64 (N,) class ids or unicode (N,)
  captions; optionally `class_order` int64 (K,), the class order the tasks were cut from (task 1 holds the first
  classes), and `class_names` unicode (M,), the name of each class id.
- **folder** (`save_tasks(..., layout="folder")`): the safe format unzipped, one .npy per key
  (`format.npy`, `task_1/images.npy`, ...); images are read lazily, batch by batch (`lazy`), so a task sequence
  need not fit in memory. `load_tasks` detects it (a folder rather than a file).
- **legacy** (the earlier implementation's files): `np.savez(path, data_structure=pickle.dumps(tasks))` with
  `tasks = {task_id: {"images": ..., "labels": ...}}`. The pickle is never unpickled: `unpickle.parse_pickle`
  reads its plain data without calling anything from it; numpy's pickle loading stays switched off.

Both are read by `npz.read_npz`, which checks every size a file states before allocating (caps in `npz`), and
validated as any `TaskSequence` is (`task_sequence`): each problem is one `TaskFileError` line naming the file and,
for a task's problem, task and field.
"""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from continual_diffusers.data.lazy import FOLDER_FORMAT_FILE, LazyImages, read_task_folder, write_task_folder
from continual_diffusers.data.npz import MAX_BYTES_ENV, NpzError, max_task_file_bytes, read_npz
from continual_diffusers.data.pickle_values import short_repr
from continual_diffusers.data.task_sequence import (
    MAX_TASK_ID,
    TaskFileError,
    TaskSequence,
    prefixed_errors,
    refuse_field,
    tasks_from_dict,
)
from continual_diffusers.data.unpickle import UnsafePickleError, parse_pickle
from continual_diffusers.utils.entrypoint import FROM_FOLDER
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.logging import get_logger

logger = get_logger(__name__)

FORMAT = "continual-diffusers/tasks-v1"
LEGACY_KEY = "data_structure"
Layout = Literal["npz", "folder"]
_META_KEYS = ("class_order", "class_names")
_SAFE_KEY = re.compile(r"task_(-?[0-9]+|[^/]*)/(images|labels)")
_CANONICAL_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_COPY_ROWS = 256  # images per block when a task folder is copied into an .npz
_show = short_repr  # task ids and keys from a file in messages: bounded, never recursing deeply


def _read_npz(path: str | os.PathLike, max_bytes: int | None) -> dict[str, np.ndarray | None]:
    """All arrays of an .npz (object arrays, which would need pickle, map to None), read by `npz.read_npz`, or of
    a task folder (images as `LazyImages`), read by `lazy.read_task_folder`."""
    try:
        if os.path.isdir(path):
            return read_task_folder(path, max_bytes)
        return read_npz(path, max_bytes)
    except FileNotFoundError:
        raise TaskFileError(f"{path}: file not found") from None
    except NpzError as error:
        raise TaskFileError(f"{path}: {error}") from None


def _from_safe(arrays: dict[str, np.ndarray | None], path: str) -> TaskSequence:
    version = arrays.pop("format")
    if version is None or version.ndim != 0 or version.dtype.kind != "U":
        raise TaskFileError(f"{path}: key 'format' must be a string like {FORMAT!r}")
    if str(version) != FORMAT:
        what = f"unsupported task-file format {_show(str(version))}"
        raise TaskFileError(f"{path}: {what}; this version reads {FORMAT!r}")
    meta = {key: arrays.pop(key) for key in _META_KEYS if key in arrays}
    entries: dict[Any, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        match = _SAFE_KEY.fullmatch(key)
        if match is None:
            expected = "expected 'format', 'task_<id>/images|labels' and optional 'class_order', 'class_names'"
            raise TaskFileError(f"{path}: unexpected key {_show(key)}; {expected}")
        raw_id, field = match.groups()
        task_id = _safe_task_id(raw_id, path)
        if value is None:
            with prefixed_errors(path):
                refuse_field(
                    task_id, field, "object arrays (which need pickle) are not allowed; use int64 or str labels"
                )
        entries.setdefault(task_id, {})[field] = value
    sequence = tasks_from_dict(entries, path)
    if not meta:
        return sequence
    for key, value in meta.items():
        if value is None:
            raise TaskFileError(f"{path}: key '{key}' is an object array (which needs pickle); not allowed")
    with prefixed_errors(path):
        return TaskSequence(sequence.tasks, meta.get("class_order"), meta.get("class_names"))


def _safe_task_id(raw_id: str, path: str) -> int | str:
    """The id in a safe-format key `task_<id>/...`: an int if written as one (the Task checks it), else the text."""
    if not _CANONICAL_INT.fullmatch(raw_id):
        return raw_id
    if len(raw_id) > 12:  # int() of a long digit string is slow, and raises ValueError past 4300 digits
        with prefixed_errors(path):
            refuse_field(
                raw_id, "task_id", f"task ids must be at most {MAX_TASK_ID}, got a {len(raw_id)}-digit number"
            )
    return int(raw_id)


def _from_legacy(arrays: dict[str, np.ndarray | None], path: str) -> TaskSequence:
    pickled = arrays[LEGACY_KEY]
    if pickled is None:
        what = f"key '{LEGACY_KEY}' is an object array, which numpy could only read by unpickling it unrestricted"
        raise TaskFileError(f"{path}: {what}; save {LEGACY_KEY}=pickle.dumps(tasks) or use save_tasks")
    if pickled.ndim != 0 or pickled.dtype.kind != "S":
        raise TaskFileError(f"{path}: key '{LEGACY_KEY}' must hold pickled bytes, got {pickled.dtype} {pickled.shape}")
    if len(arrays) > 1:
        raise TaskFileError(f"{path}: unexpected keys {sorted(set(arrays) - {LEGACY_KEY})} next to '{LEGACY_KEY}'")
    try:  # the pickle's bytes, parsed in place (a 0-d 'S' array viewed as uint8)
        data = parse_pickle(memoryview(pickled.reshape(1).view(np.uint8)))
    except UnsafePickleError as error:
        raise TaskFileError(f"{path}: {error}") from None
    except UserInputError as error:
        raise TaskFileError(f"{path}: key '{LEGACY_KEY}': {error}") from None
    return tasks_from_dict(data, path)


def load_tasks(path: str | os.PathLike, max_bytes: int | None = None) -> TaskSequence:
    """Load and validate a task file in the safe or the legacy format (detected from its keys), or a task folder
    (detected: a folder; its images stay on disk and are read batch by batch).

    Args:
        path: the .npz task file or task folder.
        max_bytes: cap on the file's size and on its arrays' total size; default `npz.max_task_file_bytes()`
            (4 GiB, or $CONTINUAL_DIFFUSERS_MAX_TASK_FILE_BYTES). For a folder: on its labels and metadata, and
            on one image (its images are not loaded).

    Raises:
        TaskFileError: the file is missing, unreadable, unsafe, too large or malformed (one line naming the file
            and, for a task's problem, task and field).
    """
    source = os.fspath(path)
    try:
        return _load(path, source, max_bytes)
    except UserInputError:
        raise
    except MemoryError:
        raise TaskFileError(f"{source}: not enough memory to load it") from None
    except Exception as error:
        # A malformed file this reader did not foresee: still one line and exit 2, but say it is unexpected (the
        # fuzz test, tests/test_fuzz_task_files.py, fails on this message).
        what = " ".join(str(error).split())[:200]
        raise TaskFileError(f"{source}: cannot be read: unexpected {type(error).__name__} ({what})") from None


def load_task_file(path: str, flag: str) -> TaskSequence:
    """`load_tasks` for a path given on the command line or in a config (`flag` names it in the refusal): a missing
    path, or a folder of images (what diffusers' --train_data_dir takes), is refused (`UserInputError`) with the
    command that writes task files from the folder."""
    check_task_path(path, flag)
    return load_tasks(path)


def check_task_path(path: str, flag: str) -> None:
    """Refuse a path that is no task file: a missing one, or a folder of images, with the command that writes task
    files from it."""
    if not os.path.exists(path):
        raise UserInputError(f"{flag} {path}: no such task file or task folder")
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, FOLDER_FORMAT_FILE)) and _holds_images(path):
        raise UserInputError(
            f"{flag} {path} is a folder of images, not a task file: write task files from it with "
            f"`{FROM_FOLDER.replace('ROOT', path)}` (it writes ./data/<name>_tasks_train.npz and _test.npz)"
        )


def _holds_images(folder: str) -> bool:
    """Images in `folder` or in its sub-folders (one level: ROOT/<class>/<images>)."""
    from continual_diffusers.data.imagefolder import IMAGE_EXTENSIONS  # it imports the task-sequence checks

    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS):
                return True
            if entry.is_dir() and any(n.lower().endswith(IMAGE_EXTENSIONS) for n in os.listdir(entry.path)):
                return True
    return False


def _load(path: str | os.PathLike, source: str, max_bytes: int | None) -> TaskSequence:
    arrays = _read_npz(path, max_bytes)
    if "format" in arrays and LEGACY_KEY in arrays:
        raise TaskFileError(f"{source}: has both 'format' and '{LEGACY_KEY}' keys; expected one of the two formats")
    if "format" in arrays:
        sequence = _from_safe(arrays, source)
    elif LEGACY_KEY in arrays and not os.path.isdir(path):
        sequence = _from_legacy(arrays, source)
    else:
        found = _show(sorted(arrays)[:5])
        what = f"expected a 'format' key (continual-diffusers) or '{LEGACY_KEY}' (legacy), found {found}"
        raise TaskFileError(f"{source}: not a task file: {what}")
    logger.info("loaded %d task(s) %s from %s", len(sequence), sequence.task_ids, source)
    return sequence


def save_tasks(path: str | os.PathLike, tasks: TaskSequence, layout: Layout = "npz") -> None:
    """Write `tasks` in the safe format, atomically (a temporary file or folder next to `path`, then `os.replace`).

    Args:
        path: the .npz file, or the folder with `layout="folder"`.
        tasks: the sequence (its class order and names are written too).
        layout: "npz" (one file, loaded whole) or "folder" (one .npy per key, images read lazily; see `lazy`).

    Raises:
        TaskFileError: the file cannot be written, or an .npz would be larger than the task-file cap (which
            `load_tasks` would refuse; checked before anything is written).
    """
    arrays: dict[str, Any] = {"format": np.array(FORMAT)}
    if tasks.class_order is not None:
        arrays["class_order"] = np.array(tasks.class_order, dtype=np.int64)
    if tasks.class_names is not None:
        arrays["class_names"] = np.array(tasks.class_names, dtype=str)
    for task in tasks:
        arrays[f"task_{task.task_id}/images"] = task.images
        if task.labels is not None:
            arrays[f"task_{task.task_id}/labels"] = task.labels
    if layout == "folder":
        try:
            write_task_folder(path, arrays)
        except UserInputError as error:
            raise TaskFileError(str(error)) from None
        return
    if layout != "npz":
        raise ValueError(f"layout must be 'npz' or 'folder', got {layout!r}")
    total = sum(value.nbytes for value in arrays.values())
    cap = max_task_file_bytes()
    if total > cap:
        raise TaskFileError(
            f"{path}: {total} bytes of images and labels, more than one .npz task file may hold ({cap} bytes, "
            f"${MAX_BYTES_ENV}: an .npz is loaded whole); write a task folder instead (layout='folder', "
            "--layout folder)"
        )
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as file:
            _write_npz(file, arrays)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a data file should be readable like any other
        os.replace(tmp, path)
    except OSError as error:
        raise TaskFileError(f"{path}: cannot write ({error.strerror or error})") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _write_npz(file, arrays: dict[str, Any]) -> None:
    """What `np.savez` writes (stored `<key>.npy` members, zip64), member by member: a task folder's `LazyImages`
    are copied block by block, never loaded whole."""
    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, value in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                if isinstance(value, LazyImages):
                    header = {"descr": np.lib.format.dtype_to_descr(value.dtype), "fortran_order": False,
                              "shape": value.shape}  # fmt: skip
                    np.lib.format.write_array_header_1_0(member, header)
                    for start in range(0, len(value), _COPY_ROWS):
                        member.write(np.ascontiguousarray(value[start : start + _COPY_ROWS]).data)
                else:
                    np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)


def convert_legacy(src: str | os.PathLike, dst: str | os.PathLike, layout: Layout = "npz") -> TaskSequence:
    """Read a task file (legacy, safe or folder), validate it, and write it to `dst` in the safe format (an .npz,
    or a task folder with `layout="folder"`; a folder is copied block by block, never loaded whole)."""
    sequence = load_tasks(src)
    save_tasks(dst, sequence, layout)
    logger.info("wrote %d task(s) to %s", len(sequence), dst)
    return sequence
