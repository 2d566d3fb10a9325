"""Reading untrusted Arrow IPC streams, parquet files and their JSON side files with pyarrow, within checked bounds.

pyarrow trusts what a file states: an IPC stream's offsets are read as they are (offsets past a buffer crash the
process when a value is accessed), a compressed IPC buffer states the size it is decompressed to and that much is
allocated, and parquet decodes a dictionary value stored once into every row that refers to it (a 100 KB file can
decode to 0.9 GB). So:

- every file is opened with `open_regular_file` (a FIFO or device is refused, never read);
- **Arrow IPC**: only the stream format (what `datasets` writes; the file format's footer may point anywhere), read
  into memory (all the files of one dataset at most `DataLimits.dataset_bytes` together). Its messages are scanned
  first: at most `MAX_RECORD_BATCHES`, and no compressed record or dictionary batch (their decompressed sizes sit
  inside the body and are allocated before anything can check them). The table is then cut to the columns asked for
  and validated in full (`validate(full=True)`: offsets inside their buffers, valid UTF-8, dictionary indices inside
  their dictionaries) before any value is touched;
- **parquet**: the footer is read first (`open_parquet`): at most `DataLimits.images` rows and `MAX_ROW_GROUPS` row
  groups; the columns asked for must state at most what is left of `DataLimits.dataset_bytes` uncompressed, and
  fixed-width columns as many once decoded. Byte-array columns are read as dictionaries (`read_dictionary`), so a
  value stored once stays one value however many rows refer to it; the result is validated in full as well;
- **JSON** (`dataset_info.json`, `state.json`, `dataset_dict.json`, the schema's `huggingface` metadata) is read
  with the package's bounded reader (`utils/jsonfile.py`: size, UTF-8, nesting depth).

Every problem is a `UserInputError` naming the file; running out of memory anyway is one line too.
"""

from __future__ import annotations

import os
import struct
from contextlib import contextmanager
from pathlib import Path

from continual_diffusers.data.limits import DataLimits
from continual_diffusers.utils.display import safe_display
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.files import NotRegularFileError, open_regular_file, read_regular_file

MAX_RECORD_BATCHES = 100_000  # messages of one stream (datasets writes batches of 100-1000 rows)
MAX_ROW_GROUPS = 100_000
_FIXED_WIDTH = {"BOOLEAN": 1, "INT32": 4, "INT64": 8, "INT96": 12, "FLOAT": 4, "DOUBLE": 8}


def pyarrow():
    """The pyarrow module with its ipc and parquet parts (UserInputError if it is not installed)."""
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError:
        raise UserInputError(
            "from-hf reads parquet / arrow with pyarrow, which is not installed: "
            'pip install "continual-diffusers[data]"'
        ) from None
    return pyarrow


def shown(path: str | os.PathLike) -> str:
    return safe_display(path, 300)


@contextmanager
def _arrow_errors(path: Path, what: str):
    pa = pyarrow()
    try:
        yield
    except UserInputError:
        raise
    except MemoryError:  # pa.ArrowMemoryError too
        raise UserInputError(f"{shown(path)}: not enough memory to read it") from None
    except (OSError, pa.ArrowException, ValueError, TypeError, IndexError, KeyError) as error:
        reason = safe_display(" ".join(str(error).split()), 200)
        raise UserInputError(f"{shown(path)}: not a readable {what} ({reason})") from None


def _read_bytes(path: Path, max_bytes: int, what: str) -> bytes:
    try:
        return read_regular_file(path, max_bytes)
    except NotRegularFileError as error:
        raise UserInputError(f"{shown(path)}: {error}") from None
    except OSError as error:
        raise UserInputError(f"{shown(path)}: cannot read the {what} ({error.strerror or error})") from None


def _flatbuffer_field(data: bytes, table: int, index: int) -> int | None:
    """Position of field `index` of the flatbuffer table at `table`, or None if absent."""
    vtable = table - struct.unpack_from("<i", data, table)[0]
    if 4 + 2 * index + 2 > struct.unpack_from("<H", data, vtable)[0]:
        return None
    offset = struct.unpack_from("<H", data, vtable + 4 + 2 * index)[0]
    return table + offset if offset else None


def _flatbuffer_table(data: bytes, position: int) -> int:
    return position + struct.unpack_from("<I", data, position)[0]


def batch_is_compressed(metadata: bytes) -> bool:
    """Whether an IPC message (its flatbuffer metadata, format/Message.fbs) is a RecordBatch, or a DictionaryBatch
    holding one, with a `compression` field: Message.header_type is field 1 (2: DictionaryBatch, 3: RecordBatch),
    Message.header field 2, DictionaryBatch.data field 1, RecordBatch.compression field 3."""
    message = _flatbuffer_table(metadata, 0)
    kind, header = _flatbuffer_field(metadata, message, 1), _flatbuffer_field(metadata, message, 2)
    if kind is None or header is None or metadata[kind] not in (2, 3):
        return False
    batch = _flatbuffer_table(metadata, header)
    if metadata[kind] == 2:
        data = _flatbuffer_field(metadata, batch, 1)
        if data is None:
            return False
        batch = _flatbuffer_table(metadata, data)
    return _flatbuffer_field(metadata, batch, 3) is not None


def _scan_messages(pa, buffer, path: Path) -> None:
    reader = pa.ipc.MessageReader.open_stream(pa.BufferReader(buffer))
    count = 0
    while True:
        try:
            message = reader.read_next_message()
        except StopIteration:
            return
        count += 1
        if count > MAX_RECORD_BATCHES:
            raise UserInputError(f"{shown(path)}: more than {MAX_RECORD_BATCHES} messages in one Arrow stream")
        try:
            compressed = batch_is_compressed(message.metadata.to_pybytes())
        except (struct.error, IndexError):
            raise UserInputError(f"{shown(path)}: not a readable arrow file (malformed message metadata)") from None
        if compressed:
            raise UserInputError(
                f"{shown(path)}: a compressed Arrow stream (LZ4/ZSTD buffers state their own decompressed size, "
                "which cannot be checked before it is allocated); write it uncompressed, as datasets does"
            )


def read_arrow_stream(path: Path, columns: list[str], limits: DataLimits, max_bytes: int):
    """(the columns `columns` (those present) of an Arrow IPC stream of at most `max_bytes`, validated in full; the
    stream's whole schema; the bytes read)."""
    pa = pyarrow()
    data = _read_bytes(path, max_bytes, "Arrow file")
    if data[:6] == b"ARROW1":
        raise UserInputError(
            f"{shown(path)}: an Arrow IPC file (random-access format), whose footer may point anywhere; from-hf "
            "reads the Arrow stream format that datasets writes (save_to_disk)"
        )
    with _arrow_errors(path, "arrow file"):
        buffer = pa.py_buffer(data)
        _scan_messages(pa, buffer, path)
        table = pa.ipc.open_stream(pa.BufferReader(buffer)).read_all()
        check_rows(table.num_rows, path, limits)
        schema = table.schema
        table = table.select([name for name in columns if name in table.column_names])
        validate(table, path)
    return table, schema, len(data)


def validate(table, path: Path) -> None:
    """Full validation of every column (offsets, UTF-8, dictionary indices) before any value is read."""
    pa = pyarrow()
    try:
        table.validate(full=True)
    except (pa.ArrowException, ValueError) as error:
        reason = safe_display(" ".join(str(error).split()), 200)
        raise UserInputError(f"{shown(path)}: invalid Arrow data ({reason})") from None


def check_rows(rows: int, path: Path, limits: DataLimits) -> None:
    if rows > limits.images:
        raise UserInputError(f"{shown(path)}: {rows} rows, more than {limits.describe('images')}")


# ------------------------------------------------------------------------------------------------- parquet
def open_parquet(path: Path, limits: DataLimits):
    """(`pyarrow.parquet.ParquetFile` with its footer read and its row counts checked, the open file; close it). No
    column is read."""
    pa = pyarrow()
    try:
        file = open_regular_file(path, limits.dataset_bytes)
    except NotRegularFileError as error:
        raise UserInputError(f"{shown(path)}: {error}") from None
    except OSError as error:
        raise UserInputError(f"{shown(path)}: cannot read ({error.strerror or error})") from None
    with _arrow_errors(path, "parquet file"):
        try:
            parquet = pa.parquet.ParquetFile(file)
            metadata = parquet.metadata
            if metadata.num_row_groups > MAX_ROW_GROUPS:
                raise UserInputError(f"{shown(path)}: more than {MAX_ROW_GROUPS} row groups")
            stated = sum(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups))
            check_rows(max(metadata.num_rows, stated), path, limits)
        except BaseException:
            file.close()
            raise
    return parquet, file


def _leaves(parquet, columns: list[str]) -> list[tuple[int, str, str, int]]:
    """(index, dotted path, physical type, fixed length) of each parquet leaf column under `columns`."""
    schema, found = parquet.schema, []
    for index in range(len(schema)):
        leaf = schema.column(index)
        if any(leaf.path == name or leaf.path.startswith(name + ".") for name in columns):
            found.append((index, leaf.path, leaf.physical_type, leaf.length or 0))
    return found


def read_parquet(parquet, file, columns: list[str], path: Path, limits: DataLimits, max_bytes: int):
    """(the columns `columns` of a parquet file opened by `open_parquet` (see the module doc), validated in full;
    the bytes they state uncompressed, at most `max_bytes`)."""
    pa = pyarrow()
    leaves = _leaves(parquet, columns)
    metadata = parquet.metadata
    stated = 0
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for index, _, physical, length in leaves:
            chunk = row_group.column(index)
            width = _FIXED_WIDTH.get(physical, length if physical == "FIXED_LEN_BYTE_ARRAY" else 0)
            stated += max(chunk.total_uncompressed_size, chunk.num_values * width)
    if stated > max_bytes:
        raise UserInputError(
            f"{shown(path)}: its columns {', '.join(safe_display(c, 60) for c in columns)} state {stated} bytes "
            f"once decompressed, more than the {max_bytes} left of {limits.describe('dataset_bytes')}"
        )
    as_dictionary = [leaf_path for _, leaf_path, physical, _ in leaves if physical == "BYTE_ARRAY"]
    with _arrow_errors(path, "parquet file"):
        reader = pa.parquet.ParquetFile(file, metadata=metadata, read_dictionary=as_dictionary)
        table = reader.read(columns=columns, use_threads=False)
    validate(table, path)
    return table, stated
