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

Files are read by `arrow_files` (validated before use, sizes checked before they are allocated), and their columns
turned into labels, captions and images by `hf_columns` (values never expanded, ids and lengths within the limits).
Here: the dataset's files are found, and column types are checked from the schema before a column is read. Every
file the dataset names (data files in state.json, files of a folder, image paths in the data) must be a regular
file that resolves inside the dataset's folder.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from continual_diffusers.data import arrow_files as af
from continual_diffusers.data.arrow_files import shown
from continual_diffusers.data.builder import Source
from continual_diffusers.data.hf_columns import Captions, Images, read_captions, read_labels
from continual_diffusers.data.limits import MAX_DATA_FILES, DataLimits
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
    labels, names = read_labels(pa, table, label_column, features or {}, path, limits)
    captions = lengths = None
    if caption_column is not None:
        rows, lengths = read_captions(pa, table, caption_column, path, limits)
        captions = Captions(rows)
    images = Images(pa, table, image_column, path, base, limits)
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
