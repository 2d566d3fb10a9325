"""CIFAR-10 from the official "python batches" as a class-incremental task sequence (classes 2k-2, 2k-1 in task k).

The batches are Python 2 pickles, so they are parsed, never unpickled (`unpickle.parse_pickle` with
encoding="bytes": plain data and numpy arrays only, nothing called), and checked: at most `MAX_BATCH_BYTES` per
file, uint8 (N, 3072) images, N labels that are ints 0-9, ten class names. Downloading is explicit
(`download_cifar10`); nothing here touches the network unless asked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from continual_diffusers.data.classorder import classes_per_task_from, resolve_class_order, split_classes
from continual_diffusers.data.task_sequence import Task, TaskSequence
from continual_diffusers.data.unpickle import parse_pickle
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.files import NotRegularFileError, read_regular_file
from continual_diffusers.utils.logging import get_logger

logger = get_logger(__name__)

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"  # published next to the tarball on the CIFAR page
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
NUM_CLASSES = 10
MAX_BATCH_BYTES = 256 * 2**20  # the official batches are 31 MB each


def find_batches_dir(cifar_dir: str | os.PathLike) -> Path:
    """The folder holding `data_batch_1`...: `cifar_dir/cifar-10-batches-py` or `cifar_dir` itself.

    Raises:
        UserInputError: neither holds the batches.
    """
    cifar_dir = Path(cifar_dir)
    for candidate in (cifar_dir / BATCHES_DIR, cifar_dir):
        if (candidate / TRAIN_BATCHES[0]).is_file():
            return candidate
    raise UserInputError(
        f"{cifar_dir}: no CIFAR-10 python batches found (expected {BATCHES_DIR}/data_batch_1 or data_batch_1); "
        "pass --download to fetch them"
    )


def _read_bounded(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_BATCH_BYTES (a FIFO or /dev/zero would never end)."""
    try:
        return read_regular_file(path, MAX_BATCH_BYTES)
    except NotRegularFileError as error:  # a FIFO, a device, or more than MAX_BATCH_BYTES (batches are 31 MB)
        raise UserInputError(f"{path}: {error}") from None
    except OSError as error:
        raise UserInputError(f"{path}: cannot read ({error.strerror or error})") from None


def _unpickle(path: Path) -> dict:
    raw = _read_bounded(path)  # its errors name the path
    try:
        data = parse_pickle(raw, encoding="bytes")
    except UserInputError as error:
        raise UserInputError(f"{path}: {error}") from None
    if type(data) is not dict:
        raise UserInputError(f"{path}: expected a pickled dict, got {type(data).__name__}")
    return data


def read_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file.

    Returns:
        images uint8 (N, 32, 32, 3) (the file stores rows of 3072 bytes, channel-major) and labels int64 (N,).
    """
    path = Path(path)
    data = _unpickle(path)
    if b"data" not in data or b"labels" not in data:
        raise UserInputError(f"{path}: not a CIFAR-10 batch (keys b'data' and b'labels' expected)")
    flat, labels = data[b"data"], _labels(path, data[b"labels"])
    if not isinstance(flat, np.ndarray) or flat.dtype != np.uint8 or flat.ndim != 2 or flat.shape[1] != 3 * 32 * 32:
        what = f"{flat.dtype} {flat.shape}" if isinstance(flat, np.ndarray) else type(flat).__name__
        raise UserInputError(f"{path}: b'data' must be a uint8 (N, 3072) array, got {what}")
    if len(flat) != len(labels):
        raise UserInputError(f"{path}: b'data' has {len(flat)} rows but b'labels' has {len(labels)} labels")
    return flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def _labels(path: Path, labels: object) -> np.ndarray:
    """b'labels': a list (or 1-D int array) of class ids 0-9, as int64."""
    if type(labels) is list and all(type(label) is int for label in labels):
        if not all(0 <= label < NUM_CLASSES for label in labels):
            raise UserInputError(f"{path}: b'labels' must be class ids 0-{NUM_CLASSES - 1}")
        return np.array(labels, dtype=np.int64)
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            raise UserInputError(f"{path}: b'labels' must be class ids 0-{NUM_CLASSES - 1}")
        return labels.astype(np.int64)
    raise UserInputError(f"{path}: b'labels' must be a list of ints 0-{NUM_CLASSES - 1}, got {type(labels).__name__}")


def load_cifar10(batches_dir: str | os.PathLike, split: Literal["train", "test"]) -> tuple[np.ndarray, np.ndarray]:
    """All images uint8 (N, 32, 32, 3) and labels int64 (N,) of one split (50,000 train / 10,000 test)."""
    parts = [read_batch(Path(batches_dir) / name) for name in (TRAIN_BATCHES if split == "train" else TEST_BATCHES)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def read_class_names(batches_dir: str | os.PathLike) -> list[str]:
    """The 10 class names from `batches.meta` ("airplane", "automobile", ...), in label order."""
    path = Path(batches_dir) / "batches.meta"
    names = _unpickle(path).get(b"label_names")
    if type(names) is not list or len(names) != NUM_CLASSES or not all(type(name) is bytes for name in names):
        raise UserInputError(f"{path}: expected b'label_names', a list of {NUM_CLASSES} byte strings")
    if not all(name.isascii() and name.decode("ascii").isprintable() and 0 < len(name) <= 100 for name in names):
        raise UserInputError(f"{path}: class names must be 1-100 printable ASCII characters")
    return [name.decode("ascii") for name in names]


def split_cifar10(
    images: np.ndarray,
    labels: np.ndarray,
    num_tasks: int | None = 5,
    class_names: Sequence[str] | None = None,
    classes_per_task: int | None = None,
    class_order: str | Sequence | None = None,
    class_order_seed: int | None = None,
    names: Sequence[str] | None = None,
) -> TaskSequence:
    """Class-incremental split: task k (1-based) holds classes [(k-1)·g, k·g) with g = 10 / num_tasks, or the
    k-th group of `classes_per_task` classes of a class order (`classorder`; the last task may hold fewer).

    Args:
        images: uint8 (N, H, W, C).
        labels: int (N,) class ids 0-9, kept global in every task.
        num_tasks: must divide 10 (ignored if `classes_per_task` is given).
        class_names: if given, each label becomes the caption "a photo of a {class_name}" (text conditioning).
        classes_per_task, class_order, class_order_seed: the split as data (see `classorder`).
        names: class names for `class_order` and the task file (default: `class_names`).
    """
    num_classes = 10
    if classes_per_task is None and (num_tasks is None or num_tasks < 1 or num_classes % num_tasks):
        raise UserInputError(
            f"num_tasks must divide the {num_classes} CIFAR-10 classes (1, 2, 5 or 10), got {num_tasks}"
        )
    per_task = classes_per_task_from(num_classes, None if classes_per_task else num_tasks, classes_per_task)
    names = names if names is not None else class_names
    order = resolve_class_order(range(num_classes), class_order, class_order_seed, names)
    tasks = []
    for task_id, group in enumerate(split_classes(order, per_task), start=1):
        keep = np.flatnonzero(np.isin(labels, group))
        task_labels = labels[keep].astype(np.int64)
        if class_names is not None:
            task_labels = np.array([f"a photo of a {class_names[c]}" for c in task_labels])
        tasks.append(Task(task_id, images[keep], task_labels))
    return TaskSequence(tuple(tasks), tuple(order), tuple(names) if names is not None else None)


def download_cifar10(root: str | os.PathLike) -> Path:
    """Download and extract the official tarball into `root` (skipped if already there); returns the batches dir.

    Raises:
        UserInputError: no network, a checksum mismatch, or no safe tar extraction in this Python.
    """
    root = Path(root)
    if (root / BATCHES_DIR / TRAIN_BATCHES[0]).is_file():
        return root / BATCHES_DIR
    if not hasattr(tarfile, "data_filter"):
        raise UserInputError("safe tar extraction needs Python >= 3.10.12; extract the CIFAR-10 tarball by hand")
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "cifar-10-python.tar.gz"
    logger.info("downloading %s to %s", URL, archive)
    try:
        with urllib.request.urlopen(URL, timeout=60) as response, open(archive, "wb") as file:
            shutil.copyfileobj(response, file)
    except (urllib.error.URLError, OSError) as error:
        raise UserInputError(f"could not download {URL} ({error}); download it by hand and pass --cifar_dir") from None
    if hashlib.md5(archive.read_bytes()).hexdigest() != MD5:
        raise UserInputError(f"{archive}: MD5 checksum mismatch (corrupt or incomplete download); delete it and retry")
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(root, filter="data")  # "data" refuses absolute paths, links out of root and device files
    return find_batches_dir(root)
