"""The columns of a Hugging Face dataset's Arrow table (`hf`) as a `builder.Source` needs them: class ids and their
names, captions, and images opened row by row.

Values are never expanded: a dictionary-encoded column stays a dictionary (a string label column is sorted into
class ids from its distinct values; a caption column is read row by row), and rows that refer to one stored image
share a key (`Images.key`), so the builder opens and decodes it once. Class ids are at most
`task_sequence.MAX_CLASS_ID`; without names in the features they have no names (no id is ever expanded into a range
of names); captions and class names are at most `DataLimits.caption_chars` characters. An image stored as a path
must be relative and resolve inside the dataset's folder.
"""

from __future__ import annotations

import bisect
import itertools
import os
from pathlib import Path

import numpy as np

from continual_diffusers.data.arrow_files import shown
from continual_diffusers.data.decode import open_image_bytes, open_image_file
from continual_diffusers.data.limits import DataLimits
from continual_diffusers.data.task_sequence import MAX_CLASS_ID
from continual_diffusers.utils.display import safe_display
from continual_diffusers.utils.errors import UserInputError


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


def read_labels(pa, table, name: str, features: dict, path: Path, limits) -> tuple[np.ndarray, list[str] | None]:
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


def read_captions(pa, table, name: str, path: Path, limits: DataLimits) -> tuple[_Rows, np.ndarray]:
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


class Captions:
    """The captions of a column, read row by row (a dictionary-encoded column is never expanded)."""

    def __init__(self, rows: _Rows):
        self.rows = rows

    def __len__(self) -> int:
        return self.rows.starts[-1]

    def __getitem__(self, i: int) -> str:
        return self.rows.value(i)


class Images:
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
