"""Task data that need not fit in memory: the *folder* layout of a task file, read lazily.

A task folder is an unzipped safe-format .npz: the same keys, one .npy file per key, with the same validation.

    my_tasks/format.npy            0-d str "continual-diffusers/tasks-v1"
    my_tasks/class_order.npy       optional int64 (K,): the class order the tasks were cut from
    my_tasks/class_names.npy       optional str (M,): the name of each class id
    my_tasks/task_1/images.npy     uint8 (N, H, W, C), C-order, never loaded whole
    my_tasks/task_1/labels.npy     optional int64 (N,) class ids or str (N,) captions

`read_task_folder` checks the folder before anything is allocated: at most `npz.MAX_MEMBERS` entries, only the
names above (anything else is refused), regular files only, every .npy header parsed with the bounded reader of
`npz` (plain dtypes only; nothing is unpickled, object arrays map to None for the caller to refuse), and every file's
size equal to its header plus the bytes its shape and dtype state. Labels and the small keys are read into memory
within `max_bytes`; each `images.npy` becomes a `LazyImages`, which reads only the rows a batch asks for, with
`os.pread` (not `mmap`, whose touched pages would count in the process's RSS until the kernel drops them): peak
memory does not grow with the number of images.

`TaskDataset` serves a lazy task through `PreparedImages`, which resizes each batch as `ImageTransform.prepare`
would have resized the whole task, so batches are identical to those of the same task held in memory.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from continual_diffusers.data.npz import (
    MAX_MEMBERS,
    NpzError,
    _quoted,
    _read_into,
    _too_big,
    checked_header,
    max_task_file_bytes,
    shaped,
)
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.files import NotRegularFileError, open_regular_file

FOLDER_FORMAT_FILE = "format.npy"
_TOP_FILES = ("format", "class_order", "class_names")
_TASK_DIR = re.compile(r"task_[^/\\]{1,64}")
_TASK_FILES = ("images", "labels")
_WRITE_CHUNK = 256  # images per write when copying a task into a folder


class LazyImages:
    """A read-only array on disk: the data of a C-order .npy file, read row by row on indexing.

    Supports `len`, `.shape`, `.dtype`, `.ndim`, `.nbytes` and indexing by an int, a slice or a 1-D integer (or bool)
    index array / list / tensor; each returns a new in-memory ndarray of the rows asked for. `np.asarray(lazy)` reads
    everything. Pickles as its path (no open file is kept: each read opens, checks the size and closes).
    """

    def __init__(self, path: str | os.PathLike, offset: int, shape: tuple[int, ...], dtype: np.dtype):
        self.path = os.fspath(path)
        self.offset = int(offset)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        if not self.shape:
            raise ValueError("LazyImages needs at least one dimension")
        self.row_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize
        self.file_size = self.offset + self.shape[0] * self.row_bytes

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.row_bytes

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"LazyImages({self.path!r}, shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self[:]
        return array if dtype is None else array.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, int | np.integer) and not isinstance(key, bool | np.bool_):
            index = int(key)
            if not -len(self) <= index < len(self):
                raise IndexError(f"index {index} is out of bounds for {len(self)} images")
            return self._rows(np.array([index % len(self)]))[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                return self._block(start, max(start, stop))
            return self._rows(np.arange(start, stop, step))
        if isinstance(key, torch.Tensor):
            key = key.detach().cpu().numpy()
        if isinstance(key, list | tuple | np.ndarray):
            index = np.asarray(key)
            if index.dtype == bool:
                if index.shape != (len(self),):
                    raise IndexError(f"a boolean index must have shape ({len(self)},), got {index.shape}")
                index = np.flatnonzero(index)
            if index.size == 0:
                index = index.astype(np.int64)
            if index.ndim != 1 or index.dtype.kind not in "iu":
                raise IndexError(f"lazy images take a 1-D integer index, got {index.dtype} {index.shape}")
            if index.size and (index.min() < -len(self) or index.max() >= len(self)):
                raise IndexError(f"an index is out of bounds for {len(self)} images")
            return self._rows(index.astype(np.int64) % max(len(self), 1))
        raise IndexError(f"lazy images take an int, a slice or a 1-D index array, got {type(key).__name__}")

    def _open(self):
        """The file, opened without blocking on a FIFO swapped in since the folder was checked, and its size
        checked on the opened descriptor."""
        try:
            file = open_regular_file(self.path)
        except (OSError, NotRegularFileError) as error:
            what = error if isinstance(error, NotRegularFileError) else error.strerror or error
            raise UserInputError(f"{self.path}: cannot read images ({what}); load the task folder again") from None
        size = os.fstat(file.fileno()).st_size
        if size != self.file_size:
            file.close()
            raise UserInputError(f"{self.path}: changed on disk since it was checked ({size} bytes, expected "
                                 f"{self.file_size}); load the task folder again")  # fmt: skip
        return file

    def _read(self, file, target: np.ndarray, first_row: int) -> None:
        view, done, offset = memoryview(target.reshape(-1).view(np.uint8)), 0, self.offset + first_row * self.row_bytes
        while done < len(view):
            count = os.preadv(file.fileno(), [view[done:]], offset + done) if hasattr(os, "preadv") else None
            if count is None:  # no preadv (not Linux/BSD): seek and read
                file.seek(offset + done)
                count = file.readinto(view[done:])
            if not count:
                raise UserInputError(f"{self.path}: ended early while reading images (changed on disk?)")
            done += count

    def _block(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *self.shape[1:]), self.dtype)
        if stop > start:
            with self._open() as file:
                self._read(file, out, start)
        return out

    def _rows(self, index: np.ndarray) -> np.ndarray:
        """Rows `index` (in range, any order, repeats allowed): one read per run of consecutive distinct rows."""
        unique, inverse = np.unique(index, return_inverse=True)
        out = np.empty((len(unique), *self.shape[1:]), self.dtype)
        if len(unique):
            breaks = np.flatnonzero(np.diff(unique) != 1) + 1
            with self._open() as file:
                for run in np.split(np.arange(len(unique)), breaks):
                    self._read(file, out[run[0] : run[-1] + 1], int(unique[run[0]]))
        return out[inverse.reshape(-1)]


def prepared_shape(shape: tuple[int, ...], resolution: int) -> tuple[int, int, int, int]:
    """(N, C, H', W') that `ImageTransform.prepare` gives uint8 (N, H, W, C) images (`resize_shorter_side`'s rule)."""
    num, height, width, channels = shape
    short, long = min(height, width), max(height, width)
    if short != resolution:
        new_long = int(resolution * long / short)
        height, width = (resolution, new_long) if height <= width else (new_long, resolution)
    return num, channels, height, width


class PreparedImages:
    """A lazy task's images as `TaskDataset.images` presents them: uint8 (N, C, H', W'), prepared per access.

    Quacks like the prepared uint8 tensor where the library uses it (`len`, `.shape`, `.dtype`, `.ndim`, indexing by
    an int, a slice or a long index tensor), so batches, replay buffers and the latent cache work unchanged.
    """

    def __init__(self, source: LazyImages, transform) -> None:
        self.source = source
        self.transform = transform
        self.shape = torch.Size(prepared_shape(source.shape, transform.resolution))
        self.dtype = torch.uint8
        self.ndim = 4

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, int | np.integer) and not isinstance(key, bool | np.bool_):
            return self.transform.prepare(self.source[[int(key)]])[0]
        return self.transform.prepare(self.source[key])


# ------------------------------------------------------------------------------------------------------ reading
def _folder_entries(root: Path) -> list[tuple[str, Path]]:
    """(key, file) for every .npy of a task folder; anything unexpected is refused."""
    entries: list[tuple[str, Path]] = []

    def scan(folder: Path) -> list[os.DirEntry]:
        found = []
        with os.scandir(folder) as it:
            for entry in it:
                found.append(entry)
                if len(found) + len(entries) > MAX_MEMBERS:
                    raise NpzError(f"more than {MAX_MEMBERS} entries; a task folder holds two files per task")
        return sorted(found, key=lambda e: e.name)

    for entry in scan(root):
        if entry.is_dir(follow_symlinks=False) and _TASK_DIR.fullmatch(entry.name):
            for inner in scan(Path(entry.path)):
                stem = inner.name[:-4] if inner.name.endswith(".npy") else None
                if stem not in _TASK_FILES:
                    raise NpzError(f"unexpected {_quoted(entry.name + '/' + inner.name)}; a task_<id>/ folder holds "
                                   "images.npy and an optional labels.npy")  # fmt: skip
                entries.append((f"{entry.name}/{stem}", Path(inner.path)))
        elif entry.name.endswith(".npy") and entry.name[:-4] in _TOP_FILES:
            entries.append((entry.name[:-4], Path(entry.path)))
        else:
            raise NpzError(f"unexpected {_quoted(entry.name)}; a task folder holds format.npy, optional "
                           "class_order.npy / class_names.npy and task_<id>/ folders")  # fmt: skip
    return entries


def _open_npy(key: str, path: Path, max_bytes: int, budget: list[int]) -> np.ndarray | LazyImages | None:
    name = f"{path.parent.name}/{path.name}" if "/" in key else path.name
    try:
        file = open_regular_file(path)
    except NotRegularFileError:
        raise NpzError(f"{_quoted(name)} is not a regular file") from None
    with file:
        info = os.fstat(file.fileno())
        header = checked_header(file, name, _quoted(name), info.st_size, "the file holds")
        if header is None:
            return None
        shape, fortran, dtype, header_bytes = header
        count = math.prod(shape)
        if key.endswith("/images") and shape:
            if fortran and len(shape) > 1:
                raise NpzError(f"{_quoted(name)}: Fortran-order images; write the folder with save_tasks")
            row = count // shape[0] * dtype.itemsize if shape[0] else 0
            if row > max_bytes:
                raise _too_big("one image of it has", row, max_bytes)
            return LazyImages(path, header_bytes, shape, dtype)
        budget[0] += count * dtype.itemsize
        if budget[0] > max_bytes:
            raise _too_big("its labels and metadata state", budget[0], max_bytes)
        array = np.empty(count, dtype)
        _read_into(file, array.view(np.uint8), name)
    return shaped(array, shape, fortran, _quoted(name))


def read_task_folder(path: str | os.PathLike, max_bytes: int | None = None) -> dict[str, Any]:
    """The arrays of a task folder by key (as `npz.read_npz` gives those of an .npz): images as `LazyImages`, the
    rest in memory; None for object arrays.

    Args:
        path: the task folder.
        max_bytes: cap on the in-memory part (labels, metadata) and on one image; default `max_task_file_bytes()`.

    Raises:
        FileNotFoundError: no such folder.
        NpzError: anything else (unexpected entries, not regular files, bad headers, sizes that disagree).
    """
    max_bytes = max_task_file_bytes() if max_bytes is None else max_bytes
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(path)
    if not (root / FOLDER_FORMAT_FILE).is_file():
        raise NpzError(f"a folder, not a regular file, nor a task folder (no {FOLDER_FORMAT_FILE})")
    try:
        return {key: _open_npy(key, file, max_bytes, [0]) for key, file in _folder_entries(root)}
    except NpzError:
        raise
    except MemoryError:
        raise NpzError("not enough memory to read it") from None
    except (OSError, ValueError, EOFError) as err:
        reason = " ".join(str(err).split())[:200]
        raise NpzError(f"not a readable task folder ({type(err).__name__}: {reason})") from None


# ------------------------------------------------------------------------------------------------------ writing
class NpyWriter:
    """Write an .npy of a known shape and dtype row block by row block (nothing held but the block written)."""

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...], dtype: np.dtype):
        self.shape, self.dtype, self.written = tuple(shape), np.dtype(dtype), 0
        self.file = open(path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_1_0(self.file, header)

    def write(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:] or self.written + len(rows) > self.shape[0]:
            raise ValueError(f"rows {rows.shape} do not fit an array of shape {self.shape} ({self.written} written)")
        self.file.write(rows.tobytes())
        self.written += len(rows)

    def close(self) -> None:
        self.file.close()
        if self.written != self.shape[0]:
            raise ValueError(f"wrote {self.written} of {self.shape[0]} rows")

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.file.close()


def _save_small(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as file:
        np.lib.format.write_array(file, np.asarray(array), allow_pickle=False)


def check_replaceable(path: str | os.PathLike) -> None:
    """Refuse a `path` that `write_task_folder` must not replace: anything but a task folder or an empty folder."""
    path = Path(path)
    if path.is_symlink() or (
        path.exists() and not (path.is_dir() and ((path / FOLDER_FORMAT_FILE).is_file() or not any(path.iterdir())))
    ):
        raise UserInputError(f"{path}: exists and is not a task folder; refusing to replace it")


def replace_folder(new: Path, path: Path) -> None:
    """Rename the finished folder `new` to `path` (same file system), replacing a folder there: the old one is
    moved aside first and put back if the rename fails."""
    old = None
    try:
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / "tasks")
        os.replace(new, path)
    except OSError:
        if old is not None and not path.exists():
            os.replace(old / "tasks", path)  # put the previous folder back
        raise
    finally:
        if old is not None and old.exists():
            shutil.rmtree(old, ignore_errors=True)


def write_task_folder(path: str | os.PathLike, arrays: dict[str, Any]) -> None:
    """Write `arrays` (safe-format keys → arrays; `*/images` may be `LazyImages`, copied in blocks) as a task
    folder, atomically: into a hidden folder next to `path`, then renamed over it. An existing `path` is replaced
    only if it is a task folder (has format.npy) or empty.

    Raises:
        UserInputError: `path` exists and is something else, or cannot be written.
    """
    path = Path(path)
    check_replaceable(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        for key, value in arrays.items():
            target = tmp / f"{key}.npy"
            target.parent.mkdir(exist_ok=True)
            if key.endswith("/images"):
                with NpyWriter(target, value.shape, value.dtype) as writer:
                    for start in range(0, len(value), _WRITE_CHUNK):
                        writer.write(np.asarray(value[start : start + _WRITE_CHUNK]))
            else:
                _save_small(target, np.asarray(value))
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        replace_folder(tmp, path)
    except OSError as error:
        raise UserInputError(f"{path}: cannot write ({error.strerror or error})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
