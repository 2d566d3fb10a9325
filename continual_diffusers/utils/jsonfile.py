"""Reading the JSON files a user or a downloaded folder gives us (`--config` files, exports' configs and metadata,
oracle configs, checkpoints' state), as untrusted input: one place that bounds what a file can cost.

- only a regular file is read: the file is opened without blocking (`O_NONBLOCK`, so a FIFO cannot stall the
  `open`) and the *opened* descriptor is checked, so a FIFO or device swapped in after any earlier check is refused
  too; `/dev/zero` or a FIFO never reaches the JSON parser;
- at most `max_json_bytes()` bytes (`MAX_JSON_BYTES`, or `$CONTINUAL_DIFFUSERS_MAX_JSON_BYTES`, or `max_bytes=`):
  the size is checked on the descriptor before reading, and the read stops one byte past the cap (a file that grows
  while it is read);
- UTF-8 JSON (`NaN` / `Infinity` included, as Python writes them), nested at most `MAX_JSON_DEPTH` levels: the
  parser's own recursion limit is caught, and a shallower but still absurd nesting is refused before any code
  walks it recursively.

Every refusal is a `UserInputError` whose one-line message starts with the file's path.
"""

from __future__ import annotations

import json
import os
import stat

from .errors import UserInputError

MAX_JSON_BYTES = 16 * 2**20  # 16 MiB: configs are a few KB, a CLIP tokenizer.json 2-4 MB
MAX_JSON_BYTES_ENV = "CONTINUAL_DIFFUSERS_MAX_JSON_BYTES"
MAX_JSON_DEPTH = 100  # containers inside containers; configs and tokenizers nest fewer than 10 levels
_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}


def max_json_bytes() -> int:
    """The cap on a JSON file's size: $CONTINUAL_DIFFUSERS_MAX_JSON_BYTES if set, else MAX_JSON_BYTES."""
    value = os.environ.get(MAX_JSON_BYTES_ENV)
    if value is None:
        return MAX_JSON_BYTES
    if not value.isdigit() or len(value) > 20:
        raise UserInputError(f"${MAX_JSON_BYTES_ENV} must be a number of bytes, got {value[:40]!r}")
    return int(value)


def json_kind(value) -> str:
    """How a message names a JSON value's type ("an object", "a list", "a number", ...)."""
    return _KINDS.get(type(value), "a number")


def open_regular_file(path: str | os.PathLike, max_bytes: int | None = None) -> tuple[int, int]:
    """(file descriptor, size) of the regular file `path`, opened for reading without blocking; `OSError` if it
    cannot be opened, `UserInputError` if it is not a regular file (FIFO, device, socket, folder) or is larger than
    `max_bytes`. The caller closes the descriptor."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserInputError(f"{path}: not a regular file ({file_type(info.st_mode)})")
        if max_bytes is not None and info.st_size > max_bytes:
            raise UserInputError(f"{path}: {info.st_size} bytes, more than the {max_bytes} allowed{_raise_hint()}")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def read_regular_file(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of the regular file `path` (see `open_regular_file`), at most `max_bytes` of them."""
    fd, _ = open_regular_file(path, max_bytes)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UserInputError(f"{path}: grew past {max_bytes} bytes while being read{_raise_hint()}")
    return data


def read_json(path: str | os.PathLike, max_bytes: int | None = None):
    """The JSON value in the file `path`, read as untrusted input (see the module docstring).

    Raises:
        UserInputError: missing or unreadable file, not a regular file, too large, not UTF-8, not JSON, nested
            deeper than `MAX_JSON_DEPTH`.
    """
    cap = max_json_bytes() if max_bytes is None else max_bytes
    try:
        raw = read_regular_file(path, cap)
    except OSError as err:
        raise UserInputError(f"{path}: cannot read the file ({err.strerror or err})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise UserInputError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except RecursionError:
        raise UserInputError(f"{path}: not valid JSON (nested deeper than {MAX_JSON_DEPTH} levels)") from None
    except ValueError as err:  # JSONDecodeError; an integer of more than 4300 digits
        raise UserInputError(f"{path}: not valid JSON ({_first_line(err)})") from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise UserInputError(f"{path}: not valid JSON (nested deeper than {MAX_JSON_DEPTH} levels)")
    return data


def read_json_object(path: str | os.PathLike, max_bytes: int | None = None) -> dict:
    """A JSON object from the file `path` (`read_json`); any other JSON value is a `UserInputError`."""
    data = read_json(path, max_bytes)
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: holds a JSON {type(data).__name__}, not an object")
    return data


def json_depth(value) -> int:
    """How deeply containers nest in `value` (0 for a number or string), computed without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                return depth
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def file_type(mode: int) -> str:
    """What a non-regular file is, from its `st_mode` ("a FIFO", "a character device", ...)."""
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block "
                       "device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):  # fmt: skip
        if test(mode):
            return name
    return "not a plain file"


def _raise_hint() -> str:
    return f"; if the file is trusted, raise the cap with ${MAX_JSON_BYTES_ENV}"


def _first_line(err: Exception) -> str:
    text = str(err)
    return text.splitlines()[0] if text else type(err).__name__
