"""Reading .npz archives within stated bounds: the zip and .npy layer under the task-file reader.

`np.load` trusts a file: an .npy header may claim 10^12 elements, a zip member may inflate to gigabytes, a member
may be a pickle or no .npy at all, a central directory may list millions of members. `read_npz` checks sizes before
it allocates anything:

- the path is a regular file (checked on the opened descriptor: a FIFO or device is never read) of at most
  `max_bytes` bytes and a zip archive (a single .npy, or anything else, is
  refused);
- its end-of-central-directory record lists at most `MAX_MEMBERS` members in at most `MAX_DIRECTORY_BYTES` (read
  before `zipfile` parses the directory);
- every member is named `<key>.npy`, once, is not encrypted, is stored or deflated (what `np.savez` and
  `np.savez_compressed` write), and the uncompressed sizes the directory states add up to at most `max_bytes`;
- every .npy header (format 1.0 or 2.0, at most `MAX_HEADER_BYTES`, parsed by numpy's header reader, which only
  evaluates literals) gives a plain dtype (`pickled_numpy.plain_dtype_problem`; object arrays map to None, for the
  caller to refuse with context) and a shape whose bytes plus the header are exactly the member's stated size;
- data is read in bounded chunks into an array of exactly that size; `zipfile` stops at the stated size and checks
  the CRC at the end, so a member that inflates to more or less than it states is refused.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
import zlib

import numpy as np

from continual_diffusers.data.pickled_numpy import plain_dtype_problem, unicode_problem
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.files import NotRegularFileError, limit_from_env, open_regular_file

MAX_TASK_FILE_BYTES = 4 * 2**30  # default cap on a task file's size on disk and on its members' total stated size
MAX_BYTES_ENV = "CONTINUAL_DIFFUSERS_MAX_TASK_FILE_BYTES"  # overrides MAX_TASK_FILE_BYTES (a number of bytes)
MAX_MEMBERS = 20_000  # arrays in one archive (two per task)
MAX_DIRECTORY_BYTES = 4 * 2**20  # central directory size (zipfile keeps ≈ 500 bytes per member in memory)
MAX_HEADER_BYTES = 10_000  # numpy's own default limit for .npy headers
_CHUNK = 16 * 2**20
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")


class NpzError(UserInputError):
    """The file is not an .npz archive this reader accepts; the message says what is wrong (without the path)."""


def max_task_file_bytes() -> int:
    """The cap on a task file's size: $CONTINUAL_DIFFUSERS_MAX_TASK_FILE_BYTES if set, else MAX_TASK_FILE_BYTES."""
    return limit_from_env(MAX_BYTES_ENV, MAX_TASK_FILE_BYTES)


def _quoted(name: str) -> str:
    return repr(name[:100] + ("..." if len(name) > 100 else ""))


def _too_big(what: str, size: int, cap: int) -> NpzError:
    return NpzError(
        f"{what} {size} bytes, more than the cap of {cap} bytes ({cap / 2**30:.1f} GiB); if the file is trusted "
        f"and fits in memory, raise the cap with ${MAX_BYTES_ENV}"
    )


def _check_directory(file, size: int) -> None:
    """Count members and directory bytes from the end-of-central-directory record (zip64 aware), as zipfile
    will find them (the last record in the final 64 KiB)."""
    tail_size = min(size, _EOCD.size + 65535)
    file.seek(size - tail_size)
    tail = file.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or tail_size - at < _EOCD.size:
        raise NpzError("not a readable .npz file (no zip end-of-central-directory record)")
    members, directory_bytes = _EOCD.unpack_from(tail, at)[4:6]
    locator = at - _ZIP64_LOCATOR.size
    if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
        file.seek(_ZIP64_LOCATOR.unpack_from(tail, locator)[2])
        record = file.read(56)
        if len(record) == 56 and record[:4] == b"PK\x06\x06":
            members, directory_bytes = struct.unpack_from("<QQ", record, 32)
    if members > MAX_MEMBERS or directory_bytes > MAX_DIRECTORY_BYTES:
        raise NpzError(
            f"the archive lists {members} members in {directory_bytes} bytes; task files have at most {MAX_MEMBERS} "
            f"members in {MAX_DIRECTORY_BYTES} bytes"
        )


def _check_members(archive: zipfile.ZipFile, max_bytes: int) -> list[zipfile.ZipInfo]:
    infos, names = archive.infolist(), set()
    for info in infos:
        if not info.filename.endswith(".npy") or info.filename in names:
            what = "appears twice" if info.filename in names else "is not an .npy array"
            raise NpzError(f"member {_quoted(info.filename)} {what}; a task file holds only <key>.npy arrays")
        names.add(info.filename)
        if info.flag_bits & 0x41:  # bit 0: encrypted, bit 6: strong encryption
            raise NpzError(f"member {_quoted(info.filename)} is encrypted")
        if info.flag_bits & 0x20:
            raise NpzError(f"member {_quoted(info.filename)} is compressed patched data, which np.savez never writes")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise NpzError(
                f"member {_quoted(info.filename)} uses zip compression method {info.compress_type}; np.savez and "
                "np.savez_compressed write stored or deflated members"
            )
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise _too_big("its members state", total, max_bytes)
    return infos


def _read_header(member, name: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, header length) of an .npy member, read with bounded reads."""
    start = member.read(8)
    if len(start) < 8 or start[:6] != b"\x93NUMPY":
        raise NpzError(f"member {_quoted(name)} is not an .npy array (no .npy magic)")
    if start[6:] not in (b"\x01\x00", b"\x02\x00"):
        raise NpzError(f"member {_quoted(name)} is .npy format {start[6]}.{start[7]}; this reader reads 1.0 and 2.0")
    length_format = "<H" if start[6] == 1 else "<I"
    length_bytes = member.read(struct.calcsize(length_format))
    if len(length_bytes) < struct.calcsize(length_format):
        raise NpzError(f"member {_quoted(name)}: truncated .npy header")
    length = struct.unpack(length_format, length_bytes)[0]
    if length > MAX_HEADER_BYTES:
        raise NpzError(f"member {_quoted(name)}: .npy header of {length} bytes (at most {MAX_HEADER_BYTES})")
    header = member.read(length)
    stream = io.BytesIO(start + length_bytes + header)
    version = np.lib.format.read_magic(stream)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    try:
        shape, fortran, dtype = read(stream, max_header_size=MAX_HEADER_BYTES)
    except Exception as error:  # numpy's parser of untrusted text: ValueError, SyntaxError, tokenize.TokenError, ...
        reason = f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
        raise NpzError(f"member {_quoted(name)}: invalid .npy header ({reason})") from None
    return shape, fortran, dtype, stream.tell()


def checked_header(stream, name: str, label: str, total_bytes: int, stated_by: str):
    """The `.npy` header of `stream` → (shape, fortran, dtype, header_bytes), checked before any data is read:
    None for an object array (its data, a pickle, is never read); a dtype that is not plain, or a data size other
    than what the container states (`total_bytes` = header + data; `stated_by`: "the archive states", "the file
    holds"), raises NpzError. `label` names the array in messages ("member 'x'", "'x'")."""
    shape, fortran, dtype, header_bytes = _read_header(stream, name)
    if dtype.hasobject:
        return None
    problem = plain_dtype_problem(dtype)
    if problem:
        raise NpzError(f"{label}: {problem}; task files hold numeric or string arrays")
    data_bytes = math.prod(shape) * dtype.itemsize
    if header_bytes + data_bytes != total_bytes:
        raise NpzError(
            f"{label}: its header says shape {shape} of {dtype} ({data_bytes} bytes), but {stated_by} "
            f"{total_bytes - header_bytes} bytes of data"
        )
    return shape, fortran, dtype, header_bytes


def shaped(array: np.ndarray, shape: tuple[int, ...], fortran: bool, label: str) -> np.ndarray:
    """A flat array read from a checked `.npy` member in its stated shape and order (unicode checked)."""
    problem = unicode_problem(array)
    if problem:
        raise NpzError(f"{label}: {problem}")
    return array.reshape(shape[::-1]).transpose() if fortran else array.reshape(shape)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray | None:
    """The array of one member, or None for an object array (whose data, a pickle, is never read)."""
    name, label = info.filename, f"member {_quoted(info.filename)}"
    with archive.open(info) as member:
        header = checked_header(member, name, label, info.file_size, "the archive states")
        if header is None:
            return None
        shape, fortran, dtype, _ = header
        array = np.empty(math.prod(shape), dtype)
        _read_into(member, array.view(np.uint8), name)
    return shaped(array, shape, fortran, label)


def _read_into(member, target: np.ndarray, name: str) -> None:
    """Fill `target` (uint8) from `member` in chunks; the member must end exactly there."""
    done = 0
    while done < len(target):
        chunk = member.read(min(_CHUNK, len(target) - done))
        if not chunk:
            raise NpzError(f"member {_quoted(name)} ends after {done} of its {len(target)} data bytes")
        target[done : done + len(chunk)] = np.frombuffer(chunk, np.uint8)
        done += len(chunk)
    if member.read(1):  # also makes zipfile check the CRC at the end of the member
        raise NpzError(f"member {_quoted(name)} holds more than its stated size")


def read_npz(path: str | os.PathLike, max_bytes: int | None = None) -> dict[str, np.ndarray | None]:
    """All arrays of an .npz archive (key → array; None for object arrays), read within the bounds above.

    Args:
        path: the .npz file.
        max_bytes: cap on the file size and on the members' total size; default `max_task_file_bytes()`.

    Raises:
        FileNotFoundError: no such file.
        NpzError: anything else about the file (unreadable, not a regular file, too big, not an .npz of plain
            arrays, inconsistent sizes, corrupt data, not enough memory).
    """
    max_bytes = max_task_file_bytes() if max_bytes is None else max_bytes
    try:
        file = open_regular_file(path)  # a FIFO or device is refused on the opened descriptor, never read
    except FileNotFoundError:
        raise
    except NotRegularFileError:
        raise NpzError("not a regular file") from None
    except OSError as error:
        raise NpzError(f"cannot read ({error.strerror or error})") from None
    try:
        with file:
            size = os.fstat(file.fileno()).st_size
            if size > max_bytes:
                raise _too_big("the file has", size, max_bytes)
            return _read_archive(io.BufferedReader(file), size, max_bytes)
    except NpzError:
        raise
    except MemoryError:
        raise NpzError("not enough memory to read it") from None
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        EOFError,
        OSError,
        ValueError,
        struct.error,
        NotImplementedError,
    ) as err:  # zipfile: unsupported zip versions and features
        reason = " ".join(str(err).split())[:200]
        raise NpzError(f"not a readable .npz file ({type(err).__name__}: {reason})") from None


def _read_archive(file, size: int, max_bytes: int) -> dict[str, np.ndarray | None]:
    magic = file.read(6)
    if magic == b"\x93NUMPY":
        raise NpzError("a single .npy array, not an .npz archive of tasks")
    if magic[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise NpzError("not a readable .npz file (not a zip archive)")
    _check_directory(file, size)
    file.seek(0)
    with zipfile.ZipFile(file) as archive:
        return {info.filename[:-4]: _read_member(archive, info) for info in _check_members(archive, max_bytes)}
