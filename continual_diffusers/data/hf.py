"""A Hugging Face dataset on local disk as a labelled `builder.Source`, read with pyarrow (the `datasets` package is
not needed; `pip install "continual-diffusers[data]"` brings pyarrow).

Accepted paths (local only, nothing is downloaded):
- a folder written by `Dataset.save_to_disk` (state.json, dataset_info.json, *.arrow);
- a folder written by `DatasetDict.save_to_disk` (dataset_dict.json and one such folder per split: `--split`);
- a .parquet or .arrow file, or a folder of them (read in sorted order, one table).

The image column holds `datasets.Image` structs {bytes, path} (or plain binary): encoded images (PNG, JPEG, ...),
decoded with PIL; a row without bytes may name a file next to the data. The label column (integer class ids, e.g. a
`ClassLabel`, whose names are read from the dataset's features; or strings, sorted into ids) defines the classes the
tasks are cut from; an optional caption column gives each image its caption (text-conditioned tasks).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

from continual_diffusers.data.builder import Source
from continual_diffusers.utils.errors import UserInputError

MAX_JSON_BYTES = 16 * 2**20


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError:
        raise UserInputError(
            "from-hf reads parquet / arrow with pyarrow, which is not installed: "
            'pip install "continual-diffusers[data]"'
        ) from None
    return pyarrow


def _read_json(path: Path) -> dict:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise UserInputError(f"{path}: more than {MAX_JSON_BYTES} bytes")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path}: cannot read ({error})") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: expected a JSON object")
    return data


def _read_arrow(pa, path: Path):
    try:
        with pa.memory_map(str(path)) as source:
            try:
                return pa.ipc.open_stream(source).read_all()  # what datasets writes
            except pa.ArrowInvalid:
                source.seek(0)
                return pa.ipc.open_file(source).read_all()
    except (OSError, pa.ArrowException) as error:
        raise UserInputError(f"{path}: not a readable arrow file ({error})") from None


def _read_file(pa, path: Path):
    if path.suffix == ".parquet":
        try:
            return pa.parquet.read_table(str(path))
        except (OSError, pa.ArrowException) as error:
            raise UserInputError(f"{path}: not a readable parquet file ({error})") from None
    if path.suffix == ".arrow":
        return _read_arrow(pa, path)
    raise UserInputError(f"{path}: expected a .parquet or .arrow file, or a dataset folder")


def _concat(pa, tables: list, where: Path):
    try:
        return pa.concat_tables(tables)
    except pa.ArrowException as error:
        raise UserInputError(f"{where}: its files do not share one schema ({error})") from None


def read_table(path: str | os.PathLike, split: str = "train") -> tuple[object, dict]:
    """(pyarrow Table, features dict from the dataset's metadata, {} if none) of a local dataset path."""
    pa = _pyarrow()
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"{path}: no such file or folder")
    if path.is_file():
        table = _read_file(pa, path)
        return table, _schema_features(table)
    if (path / "dataset_dict.json").is_file():
        splits = _read_json(path / "dataset_dict.json").get("splits", [])
        if split not in splits or not isinstance(split, str) or "/" in split or split.startswith("."):
            raise UserInputError(f"{path}: no split {split!r} (splits: {', '.join(map(str, splits))}); pass --split")
        path = path / split
    if (path / "state.json").is_file():
        files = _read_json(path / "state.json").get("_data_files", [])
        names = [entry.get("filename") if isinstance(entry, dict) else None for entry in files]
        if not names or not all(isinstance(n, str) and n == Path(n).name and not n.startswith(".") for n in names):
            raise UserInputError(f"{path}/state.json: '_data_files' must list file names in the folder")
        table = _concat(pa, [_read_arrow(pa, path / name) for name in names], path)
        info = _read_json(path / "dataset_info.json") if (path / "dataset_info.json").is_file() else {}
        features = info.get("features")
        return table, features if isinstance(features, dict) else _schema_features(table)
    files = sorted(p for p in path.iterdir() if p.suffix in (".parquet", ".arrow") and p.is_file())
    if not files:
        raise UserInputError(f"{path}: no dataset here (no state.json, dataset_dict.json, .parquet or .arrow files)")
    table = _concat(pa, [_read_file(pa, p) for p in files], path)
    return table, _schema_features(table)


def _schema_features(table) -> dict:
    """The `datasets` features stored in an arrow/parquet schema's metadata ({} if none)."""
    raw = (table.schema.metadata or {}).get(b"huggingface")
    try:
        features = json.loads(raw)["info"]["features"] if raw and len(raw) <= MAX_JSON_BYTES else {}
    except (ValueError, KeyError, TypeError):
        return {}
    return features if isinstance(features, dict) else {}


def _column(table, name: str, flag: str, path: Path):
    if name not in table.column_names:
        raise UserInputError(f"{path}: no column {name!r} ({flag}); columns: {', '.join(table.column_names)}")
    column = table.column(name)
    if column.null_count:
        raise UserInputError(f"{path}: column {name!r} has {column.null_count} empty values")
    return column


def _labels(pa, table, name: str, features: dict, path: Path) -> tuple[np.ndarray, list[str]]:
    column = _column(table, name, "--label_column", path)
    if pa.types.is_integer(column.type):
        labels = column.to_numpy().astype(np.int64)
        if labels.size and labels.min() < 0:
            raise UserInputError(f"{path}: column {name!r} holds negative class ids (unlabelled rows?)")
        names = (features.get(name) or {}).get("names") if isinstance(features.get(name), dict) else None
        largest = int(labels.max()) if labels.size else -1
        if isinstance(names, list) and all(isinstance(n, str) for n in names) and len(names) > largest:
            return labels, names
        return labels, [str(c) for c in range(largest + 1)]
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        values = column.to_pylist()
        names = sorted(set(values))
        ids = {n: i for i, n in enumerate(names)}
        return np.array([ids[v] for v in values], dtype=np.int64), names
    raise UserInputError(f"{path}: column {name!r} is {column.type}; labels must be integer class ids or strings")


def _image_getter(pa, table, name: str, path: Path):
    column = _column(table, name, "--image_column", path).combine_chunks()
    base = path if path.is_dir() else path.parent
    if pa.types.is_struct(column.type) and column.type.get_field_index("bytes") >= 0:
        data = column.field("bytes")
        paths = column.field("path") if column.type.get_field_index("path") >= 0 else None
    elif pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        data, paths = column, None
    else:
        raise UserInputError(
            f"{path}: column {name!r} is {column.type}; expected encoded images (datasets.Image or binary)"
        )

    def get(i: int):
        from PIL import Image

        raw = data[i].as_py()
        try:
            if raw is not None:
                return Image.open(io.BytesIO(raw))
            file = paths[i].as_py() if paths is not None else None
            if not file or not (base / file).is_file():
                raise UserInputError(f"{path}: row {i} of {name!r} has no image bytes and no local file")
            return Image.open(base / file)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise UserInputError(f"{path}: row {i}: unreadable image ({' '.join(str(error).split())[:150]})") from None

    return get


def read_hf_dataset(
    path: str | os.PathLike,
    image_column: str = "image",
    label_column: str = "label",
    caption_column: str | None = None,
    split: str = "train",
) -> Source:
    """The rows of a local Hugging Face dataset (see the module doc) as a `Source`.

    Raises:
        UserInputError: pyarrow missing, an unreadable path, a missing or unsuitable column.
    """
    pa = _pyarrow()
    table, features = read_table(path, split)
    path = Path(path)
    if table.num_rows == 0:
        raise UserInputError(f"{path}: the dataset has no rows")
    labels, names = _labels(pa, table, label_column, features, path)
    captions = None
    if caption_column is not None:
        column = _column(table, caption_column, "--caption_column", path)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            raise UserInputError(f"{path}: column {caption_column!r} is {column.type}; captions must be strings")
        captions = column.to_pylist()
    return Source(
        name=str(path),
        labels=labels,
        class_names=names,
        open_image=_image_getter(pa, table, image_column, path),
        where=lambda i: f"row {i}",
        captions=captions,
    )
