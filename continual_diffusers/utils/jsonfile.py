"""Reading the JSON files a user or a downloaded folder gives us (`--config` files, exports' configs and metadata,
oracle configs, checkpoints' state), as untrusted input: one place that bounds what a file can cost.

- only a regular file is read (`utils/files.read_regular_file`: opened without blocking and checked on the opened
  descriptor), so a FIFO or device, also one swapped in after any earlier check, never reaches the JSON parser;
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

from .display import safe_display
from .errors import UserInputError
from .files import NotRegularFileError, limit_from_env, read_regular_file

MAX_JSON_BYTES = 16 * 2**20  # 16 MiB: configs are a few KB, a CLIP tokenizer.json 2-4 MB
MAX_JSON_BYTES_ENV = "CONTINUAL_DIFFUSERS_MAX_JSON_BYTES"
MAX_JSON_DEPTH = 100  # containers inside containers; configs and tokenizers nest fewer than 10 levels
_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}


def max_json_bytes() -> int:
    """The cap on a JSON file's size: $CONTINUAL_DIFFUSERS_MAX_JSON_BYTES if set, else MAX_JSON_BYTES."""
    return limit_from_env(MAX_JSON_BYTES_ENV, MAX_JSON_BYTES)


def json_kind(value) -> str:
    """How a message names a JSON value's type ("an object", "a list", "a number", ...)."""
    return _KINDS.get(type(value), "a number")


def read_json(path: str | os.PathLike, max_bytes: int | None = None):
    """The JSON value in the file `path`, read as untrusted input (see the module docstring).

    Raises:
        UserInputError: missing or unreadable file, not a regular file, too large, not UTF-8, not JSON, nested
            deeper than `MAX_JSON_DEPTH`.
    """
    cap, where = max_json_bytes() if max_bytes is None else max_bytes, safe_display(path, 300)
    try:
        raw = read_regular_file(path, cap)
    except NotRegularFileError as err:
        hint = _raise_hint() if "bytes" in str(err) else ""
        raise UserInputError(f"{where}: {err}{hint}") from None
    except OSError as err:
        raise UserInputError(f"{where}: cannot read the file ({err.strerror or err})") from None
    return parse_json(raw, where)


def parse_json(raw: bytes, where: str):
    """The JSON value in untrusted bytes `raw` (a file's, or metadata inside another file), refused as `where`:
    UTF-8, valid JSON, nested at most `MAX_JSON_DEPTH` levels. The caller bounds `len(raw)`."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise UserInputError(f"{where}: not UTF-8 text (byte {err.start})") from None
    except RecursionError:
        raise UserInputError(f"{where}: not valid JSON (nested deeper than {MAX_JSON_DEPTH} levels)") from None
    except ValueError as err:  # JSONDecodeError; an integer of more than 4300 digits
        raise UserInputError(f"{where}: not valid JSON ({_first_line(err)})") from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise UserInputError(f"{where}: not valid JSON (nested deeper than {MAX_JSON_DEPTH} levels)")
    return data


def read_json_object(path: str | os.PathLike, max_bytes: int | None = None) -> dict:
    """A JSON object from the file `path` (`read_json`); any other JSON value is a `UserInputError`."""
    data = read_json(path, max_bytes)
    if not isinstance(data, dict):
        raise UserInputError(f"{safe_display(path, 300)}: holds a JSON {type(data).__name__}, not an object")
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


def _raise_hint() -> str:
    return f"; if the file is trusted, raise the cap with ${MAX_JSON_BYTES_ENV}"


def _first_line(err: Exception) -> str:
    text = str(err)
    return text.splitlines()[0] if text else type(err).__name__
