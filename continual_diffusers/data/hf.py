"""A Hugging Face dataset on local disk as a labelled `builder.Source`, read with pyarrow (the `datasets` package is
not needed; `pip install "continual-diffusers[data]"` brings pyarrow).

Accepted paths (local only, nothing is downloaded):
- a folder written by `Dataset.save_to_disk` (state.json, dataset_info.json, *.arrow);
- a folder written by `DatasetDict.save_to_disk` (dataset_dict.json and one such folder per split: `--split`);
- a .parquet or .arrow (Arrow stream) file, or a folder of them (read in sorted order, one table).

The image column holds `datasets.Image` structs {bytes, path} (or plain binary): encoded images (PNG, JPEG, ...),
decoded with PIL (`decode`); a row without bytes may name a file next to the data. The label column (integer class
ids, e.g. a `ClassLabel`, whose names are read from the dataset's features; or strings, sorted into ids) defines
the classes the tasks are cut from; an optional caption column gives each image its caption (text-conditioned
tasks).

Files are read by `arrow_files` (validated before use, sizes checked before they are allocated). Here: column
types are checked from the schema before a column is read; values are never expanded (a dictionary-encoded column
stays a dictionary; rows that share a stored image share its decoding); class ids are at most `tasks.MAX_CLASS_ID`
and, without names in the features, have no names (no id is ever expanded into a range of names); captions and
class names are at most `DataLimits.caption_chars` characters. Every file the dataset names (data files in
state.json, files of a folder, image paths in the data) must be a regular file that resolves inside the dataset's
folder.
"""

from __future__ import annotations

import bisect
import itertools
import os
import stat
from pathlib import Path

import numpy as np

from continual_diffusers.data import arrow_files as af
from continual_diffusers.data.arrow_files import shown
from continual_diffusers.data.builder import Source
from continual_diffusers.data.decode import open_image_bytes, open_image_file
from continual_diffusers.data.limits import MAX_DATA_FILES, DataLimits
from continual_diffusers.data.tasks import MAX_CLASS_ID
from continual_diffusers.utils.display import safe_display
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.files import file_kind
from continual_diffusers.utils.jsonfile import max_json_bytes, parse_json, read_json_object


def _inside(folder: Path, name: str | os.PathLike, what: str) -> Path:
    """`folder / name`, refused unless it resolves inside `folder`."""
    path = folder / name
    real_folder, real = os.path.realpath(folder), os.path.realpath(path)
    if os.path.commonpath([real_folder, real]) != real_folder:
        raise UserInputError(
            f"{shown(path)}: {what} resolves outside {shown(folder)} (to {shown(real)}); the files a dataset names "
            "must be inside its folder"
        )
    return path


def _plain_name(name: object) -> bool:
    return isinstance(name, str) and name == Path(name).name and not name.startswith(".") and "\x00" not in name


def _data_files(path: Path, split: str) -> tuple[list[Path], Path, Path | None]:
    """(data files, the folder they belong to, dataset_info.json or None) of a dataset path."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UserInputError(f"{shown(path)}: no such file or folder") from None
    except OSError as error:
        raise UserInputError(f"{shown(path)}: cannot read ({error.strerror or error})") from None
    if stat.S_ISREG(mode):
        return [path], path.parent, None
    if not stat.S_ISDIR(mode):
        raise UserInputError(f"{shown(path)}: {file_kind(mode)}, not a regular file or folder (a dataset)")
    if os.path.lexists(path / "dataset_dict.json"):
        splits = read_json_object(path / "dataset_dict.json").get("splits", [])
        names = [s for s in splits if isinstance(s, str)] if isinstance(splits, list) else []
        if split not in names or not _plain_name(split):
            shown_splits = ", ".join(safe_display(s, 40) for s in names[:20])
            raise UserInputError(f"{shown(path)}: no split {safe_display(split, 60)!r} (splits: {shown_splits}); "
                                 "pass --split")  # fmt: skip
        path = _inside(path, split, "the split folder")
    if os.path.lexists(path / "state.json"):
        entries = read_json_object(path / "state.json").get("_data_files", [])
        names = (
            [e.get("filename") if isinstance(e, dict) else None for e in entries] if isinstance(entries, list) else []
        )
        plain = all(_plain_name(n) for n in names) and len(set(names)) == len(names)
        if not names or len(names) > MAX_DATA_FILES or not plain:
            raise UserInputError(
                f"{shown(path)}/state.json: '_data_files' must list 1 to {MAX_DATA_FILES} distinct file names in the "
                "folder"
            )
        info = path / "dataset_info.json"
        return [_inside(path, n, "a data file") for n in names], path, info if os.path.lexists(info) else None
    try:
        with os.scandir(path) as it:
            names = sorted(
                e.name for e in it if e.name.endswith((".parquet", ".arrow")) and not e.name.startswith(".")
            )
    except OSError as error:
        raise UserInputError(f"{shown(path)}: cannot list ({error.strerror or error})") from None
    if not names:
        raise UserInputError(
            f"{shown(path)}: no dataset here (no state.json, dataset_dict.json, .parquet or .arrow files)"
        )
    if len(names) > MAX_DATA_FILES:
        raise UserInputError(f"{shown(path)}: more than {MAX_DATA_FILES} data files")
    return [_inside(path, n, "a data file") for n in names], path, None


# ------------------------------------------------------------------------------------------------- column types
def _values_type(pa, kind):
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _is_text(pa, kind) -> bool:
    kind = _values_type(pa, kind)
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _is_bytes(pa, kind) -> bool:
    kind = _values_type(pa, kind)
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


def _check_schema(pa, schema, columns: dict[str, str], path: Path) -> None:
    """Every column asked for ({flag: name}) exists and has a type its role accepts (from the schema: nothing read)."""
    for flag, name in columns.items():
        if schema.get_field_index(name) < 0:
            available = ", ".join(safe_display(n, 60) for n in schema.names[:30])
            raise UserInputError(f"{shown(path)}: no column {safe_display(name, 60)!r} ({flag}); columns: {available}")
        kind = schema.field(name).type
        shown_type = safe_display(kind, 120)
        if flag == "--image_column":
            if pa.types.is_struct(kind):
                fields = {kind.field(i).name: kind.field(i).type for i in range(kind.num_fields)}
                if (
                    "bytes" in fields
                    and _is_bytes(pa, fields["bytes"])
                    and _is_text(pa, fields.get("path", pa.string()))
                ):
                    continue
            elif _is_bytes(pa, kind):
                continue
            raise UserInputError(f"{shown(path)}: column {name!r} is {shown_type}; expected encoded images "
                                 "(datasets.Image or binary)")  # fmt: skip
        if flag == "--label_column" and not (pa.types.is_integer(kind) or _is_text(pa, kind)):
            raise UserInputError(
                f"{shown(path)}: column {name!r} is {shown_type}; labels must be integer class ids or strings"
            )
        if flag == "--caption_column" and not _is_text(pa, kind):
            raise UserInputError(f"{shown(path)}: column {name!r} is {shown_type}; captions must be strings")


def _read_file(pa, path: Path, columns: dict[str, str], limits: DataLimits, max_bytes: int):
    """(table of the columns asked for, the schema's metadata, bytes read) of one data file of at most `max_bytes`."""
    names = list(columns.values())
    if path.suffix == ".parquet":
        parquet, file = af.open_parquet(path, limits)
        with file:
            _check_schema(pa, parquet.schema_arrow, columns, path)
            table, used = af.read_parquet(parquet, file, names, path, limits, max_bytes)
            return table, parquet.schema_arrow.metadata, used
    if path.suffix == ".arrow":
        table, schema, used = af.read_arrow_stream(path, names, limits, max_bytes)
        _check_schema(pa, schema, columns, path)
        return table, schema.metadata, used
    raise UserInputError(f"{shown(path)}: expected a .parquet or .arrow file, or a dataset folder")


def _schema_features(metadata: dict | None, path: Path) -> dict:
    """The `datasets` features stored in a schema's `huggingface` metadata ({} if none)."""
    raw = (metadata or {}).get(b"huggingface")
    if not raw:
        return {}
    if len(raw) > max_json_bytes():
        raise UserInputError(f"{shown(path)}: schema metadata 'huggingface' of {len(raw)} bytes (at most "
                             f"{max_json_bytes()})")  # fmt: skip
    data = parse_json(raw, f"{shown(path)}: schema metadata 'huggingface'")
    info = data.get("info") if isinstance(data, dict) else None
    features = info.get("features") if isinstance(info, dict) else None
    return features if isinstance(features, dict) else {}


# ------------------------------------------------------------------------------------------------- columns
class _Rows:
    """Row i of a chunked column, found without concatenating the chunks."""

    def __init__(self, chunks: list):
        self.chunks = chunks
        self.starts = list(itertools.accumulate((len(chunk) for chunk in chunks), initial=0))

    def locate(self, i: int) -> tuple[int, int]:
        k = bisect.bisect_right(self.starts, i) - 1
        return k, i - self.starts[k]

    def value(self, i: int):
        k, j = self.locate(i)
        return self.chunks[k][j].as_py()


def _dictionary_parts(pa, chunk) -> tuple[object, np.ndarray]:
    """(values, int64 indices) of a chunk: its own dictionary, or one made from its distinct values."""
    encoded = chunk if pa.types.is_dictionary(chunk.type) else pa.compute.dictionary_encode(chunk)
    return encoded.dictionary, encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _string_labels(pa, column, name: str, path: Path, limits: DataLimits) -> tuple[np.ndarray, list[str]]:
    """Class ids of a string (or dictionary-of-string) column: its distinct strings, sorted."""
    parts, distinct, start = [], set(), 0
    for chunk in column.chunks:
        values, indices = _dictionary_parts(pa, chunk)
        used, first = np.unique(indices, return_index=True)
        texts = dict(zip(used.tolist(), values.take(pa.array(used)).to_pylist()))  # only the values rows refer to
        for index, at in zip(used.tolist(), first.tolist()):
            text, row = texts[index], start + at
            if text is None:
                raise UserInputError(f"{shown(path)}: row {row}: column {name!r} has no value")
            if len(text) > limits.caption_chars:
                raise UserInputError(
                    f"{shown(path)}: row {row}: a class name of {len(text)} characters in {name!r}, more than "
                    f"{limits.describe('caption_chars')}"
                )
            distinct.add(text)
        if len(distinct) > MAX_CLASS_ID + 1:
            raise UserInputError(f"{shown(path)}: column {name!r} has more than {MAX_CLASS_ID + 1} distinct labels")
        parts.append((texts, indices))
        start += len(chunk)
    names = sorted(distinct)
    ids = {text: i for i, text in enumerate(names)}
    labels = []
    for texts, indices in parts:  # texts: {used dictionary index: text}, keys in increasing order
        used = np.fromiter(texts, np.int64, len(texts))
        class_ids = np.array([ids[text] for text in texts.values()], np.int64)
        labels.append(class_ids[np.searchsorted(used, indices)])
    return np.concatenate(labels) if labels else np.zeros(0, np.int64), names


def _class_names(features: dict, name: str, largest: int, path: Path, limits: DataLimits) -> list[str] | None:
    """The ClassLabel names of column `name` from the features, checked; None if the features name none."""
    feature = features.get(name)
    names = feature.get("names") if isinstance(feature, dict) else None
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UserInputError(f"{shown(path)}: the features' names of {name!r} must be a list of strings")
    if len(names) > MAX_CLASS_ID + 1:
        raise UserInputError(f"{shown(path)}: the features give {len(names)} class names for {name!r}; class ids go "
                             f"up to {MAX_CLASS_ID}")  # fmt: skip
    if largest >= len(names):
        raise UserInputError(f"{shown(path)}: column {name!r} holds class id {largest}, but its features name "
                             f"{len(names)} classes")  # fmt: skip
    long = next((n for n in names if len(n) > limits.caption_chars), None)
    if long is not None:
        raise UserInputError(f"{shown(path)}: a class name of {len(long)} characters in the features of {name!r}, "
                             f"more than {limits.describe('caption_chars')}")  # fmt: skip
    return names


def _labels(pa, table, name: str, features: dict, path: Path, limits) -> tuple[np.ndarray, list[str] | None]:
    column = table.column(name)
    if not pa.types.is_integer(column.type):
        return _string_labels(pa, column, name, path, limits)
    values = column.to_numpy()
    if values.size and values.min() < 0:
        raise UserInputError(f"{shown(path)}: column {name!r} holds negative class ids (unlabelled rows?)")
    largest = int(values.max()) if values.size else -1
    if largest > MAX_CLASS_ID:
        raise UserInputError(
            f"{shown(path)}: column {name!r} holds class id {largest}; class ids must be at most {MAX_CLASS_ID} "
            "(the model has one embedding per id up to the largest); renumber the classes from 0"
        )
    return values.astype(np.int64), _class_names(features, name, largest, path, limits)


def _captions(pa, table, name: str, path: Path, limits: DataLimits) -> tuple[_Rows, np.ndarray]:
    """Row access to a caption column, and each caption's length (checked against the limit)."""
    lengths, start = [], 0
    for chunk in table.column(name).chunks:
        if pa.types.is_dictionary(chunk.type):
            length = pa.compute.take(pa.compute.utf8_length(chunk.dictionary), chunk.indices)
        else:
            length = pa.compute.utf8_length(chunk)
        if length.null_count:
            raise UserInputError(f"{shown(path)}: column {name!r} has {length.null_count} empty captions")
        length = length.to_numpy(zero_copy_only=False).astype(np.int64)
        if length.size and length.max() > limits.caption_chars:
            row = start + int(length.argmax())
            raise UserInputError(f"{shown(path)}: row {row}: a caption of {int(length.max())} characters, more than "
                                 f"{limits.describe('caption_chars')}")  # fmt: skip
        lengths.append(length)
        start += len(chunk)
    return _Rows(table.column(name).chunks), np.concatenate(lengths) if lengths else np.zeros(0, np.int64)


class _Captions:
    """The captions of a column, read row by row (a dictionary-encoded column is never expanded)."""

    def __init__(self, rows: _Rows):
        self.rows = rows

    def __len__(self) -> int:
        return self.rows.starts[-1]

    def __getitem__(self, i: int) -> str:
        return self.rows.value(i)


class _Images:
    """Row i of an image column → the opened image; `key(i)` names the stored value it refers to."""

    def __init__(self, pa, table, name: str, path: Path, base: Path, limits: DataLimits):
        self.pa, self.name, self.path, self.base, self.limits = pa, name, path, base, limits
        chunks, paths = [], []
        for chunk in table.column(name).chunks:
            if pa.types.is_struct(chunk.type):
                children = dict(zip([f.name for f in chunk.type], chunk.flatten()))
                chunks.append(children["bytes"])
                paths.append(children.get("path"))
            else:
                chunks.append(chunk)
                paths.append(None)
        self.data, self.paths = _Rows(chunks), paths
        # each dictionary-encoded chunk's indices (-1: no bytes), to name the stored value a row refers to
        self.indices = [
            chunk.indices.fill_null(-1).to_numpy(zero_copy_only=False) if pa.types.is_dictionary(chunk.type) else None
            for chunk in chunks
        ]

    def key(self, i: int):
        k, j = self.data.locate(i)
        indices = self.indices[k]
        return (k, int(indices[j])) if indices is not None and indices[j] >= 0 else None

    def open(self, i: int):
        k, j = self.data.locate(i)
        raw = self.data.chunks[k][j].as_py()
        if raw is not None:
            return open_image_bytes(raw, f"{shown(self.path)}: row {i}", self.limits)
        file = self.paths[k][j].as_py() if self.paths[k] is not None else None
        if not file:
            raise UserInputError(f"{shown(self.path)}: row {i} of {self.name!r} has no image bytes and no local file")
        if os.path.isabs(file) or "\x00" in file:
            raise UserInputError(f"{shown(self.path)}: row {i}: image path {safe_display(file, 200)!r} is absolute; "
                                 f"image paths must be relative to {shown(self.base)}")  # fmt: skip
        real_base, real = os.path.realpath(self.base), os.path.realpath(self.base / file)
        if os.path.commonpath([real_base, real]) != real_base:
            raise UserInputError(f"{shown(self.path)}: row {i}: image path {safe_display(file, 200)!r} resolves "
                                 f"outside {shown(self.base)}")  # fmt: skip
        return open_image_file(
            self.base / file, f"{shown(self.path)}: row {i} ({safe_display(file, 200)})", self.limits
        )


def read_hf_dataset(
    path: str | os.PathLike,
    image_column: str = "image",
    label_column: str = "label",
    caption_column: str | None = None,
    split: str = "train",
    limits: DataLimits | None = None,
) -> Source:
    """The rows of a local Hugging Face dataset (see the module doc) as a `Source`.

    Args:
        limits: row, size, caption and pixel limits; default `DataLimits.from_env()`.

    Raises:
        UserInputError: pyarrow missing, an unreadable or invalid path or file, a missing or unsuitable column, a
            value past a limit.
    """
    try:
        return _read_hf_dataset(Path(path), image_column, label_column, caption_column, split, limits)
    except MemoryError:  # sizes within the limits, but more than this machine has
        raise UserInputError(f"{shown(path)}: not enough memory to read it") from None


def _read_hf_dataset(path: Path, image_column, label_column, caption_column, split, limits) -> Source:
    pa = af.pyarrow()
    limits = limits or DataLimits.from_env()
    files, base, info = _data_files(path, split)
    columns = {"--image_column": image_column, "--label_column": label_column}
    if caption_column is not None:
        columns["--caption_column"] = caption_column
    tables, features, budget = [], None, limits.dataset_bytes
    for file in files:
        table, metadata, used = _read_file(pa, file, columns, limits, budget)
        budget -= used
        if features is None:
            features = _schema_features(metadata, file)
        tables.append(table)
    if info is not None:
        features = read_json_object(info).get("features")
        features = features if isinstance(features, dict) else {}
    try:
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    except pa.ArrowException as error:
        reason = safe_display(" ".join(str(error).split()), 200)
        raise UserInputError(f"{shown(path)}: its files do not share one schema ({reason})") from None
    af.check_rows(table.num_rows, path, limits)
    if table.num_rows == 0:
        raise UserInputError(f"{shown(path)}: the dataset has no rows")
    for name in columns.values():
        if table.column(name).null_count:
            raise UserInputError(f"{shown(path)}: column {name!r} has {table.column(name).null_count} empty values")
    labels, names = _labels(pa, table, label_column, features or {}, path, limits)
    captions = lengths = None
    if caption_column is not None:
        rows, lengths = _captions(pa, table, caption_column, path, limits)
        captions = _Captions(rows)
    images = _Images(pa, table, image_column, path, base, limits)
    return Source(
        name=shown(path),
        labels=labels,
        class_names=names,
        open_image=images.open,
        where=lambda i: f"row {i}",
        captions=captions,
        caption_lengths=lengths,
        image_key=images.key,
    )
