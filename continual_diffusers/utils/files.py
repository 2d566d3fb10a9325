"""Opening a file whose path comes from the user or from another file, without hanging or reading a device.

`open(path)` on a FIFO blocks until something writes to it, and a character device such as /dev/zero never ends.
`open_regular_file` refuses both, and does so on the opened descriptor: the path is opened with O_NONBLOCK (opening
a FIFO then returns at once) and `fstat` of that descriptor must be a regular file, so a file swapped for a FIFO
between a check and the open cannot block the reader either.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from .errors import UserInputError

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFileError(UserInputError):
    """The path is not a regular file (a FIFO, a device, a folder, a socket) or is larger than allowed; the message
    does not name the path (callers put it in front)."""


def file_kind(mode: int) -> str:
    """'a regular file', 'a folder', 'a FIFO', 'a character device', ... for an `st_mode`."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _check(info: os.stat_result, max_bytes: int | None) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFileError(f"{file_kind(info.st_mode)}, not a regular file")
    if max_bytes is not None and info.st_size > max_bytes:
        raise NotRegularFileError(f"{info.st_size} bytes, more than the {max_bytes} allowed")


def open_regular_file(path: str | os.PathLike, max_bytes: int | None = None) -> BinaryIO:
    """`path` opened for binary reading (unbuffered; close it), if it is a regular file of at most `max_bytes`.

    Symlinks are followed. The path is checked with `stat` first (a device is never opened), then opened with
    O_NONBLOCK | O_NOCTTY and checked again with `fstat` on the descriptor.

    Raises:
        FileNotFoundError, PermissionError, other OSError: from the system, as `open` raises them.
        NotRegularFileError: a FIFO, device, folder or socket, or more than `max_bytes` bytes.
    """
    _check(os.stat(path), max_bytes)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        _check(os.fstat(fd), max_bytes)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # no effect on a regular file; restores plain read() semantics
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (checked before reading, and again while reading: a file
    that grows past it is refused).

    Raises:
        The errors of `open_regular_file`.
    """
    chunks, size = [], 0
    with open_regular_file(path, max_bytes) as file:
        while size <= max_bytes:
            chunk = file.read(min(2**24, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    if size > max_bytes:
        raise NotRegularFileError(f"grew past {max_bytes} bytes while being read")
    return b"".join(chunks)


def limit_from_env(variable: str, default: int) -> int:
    """A size or count limit: the environment variable `variable` if set (a positive whole number, else a
    `UserInputError`), otherwise `default`."""
    text = os.environ.get(variable)
    if text is None:
        return default
    if not text.isdigit() or len(text) > 20 or int(text) < 1:
        raise UserInputError(f"${variable} must be a positive whole number, got {text[:40]!r}")
    return int(text)
