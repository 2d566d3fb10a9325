"""CIFAR-10 from the official "python batches" as a class-incremental task sequence (classes 2k-2, 2k-1 in task k).

The batches are pickles, so they are read with `restricted_loads` (plain data and numpy arrays only). Downloading
is explicit (`download_cifar10`); nothing here touches the network unless asked.
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

from continual_diffusers.data.tasks import Task, TaskSequence
from continual_diffusers.data.unpickle import restricted_loads
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.logging import get_logger

logger = get_logger(__name__)

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"  # published next to the tarball on the CIFAR page
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)


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


def _unpickle(path: Path) -> dict:
    try:
        data = restricted_loads(path.read_bytes(), encoding="bytes")
    except OSError as error:
        raise UserInputError(f"{path}: cannot read ({error.strerror or error})") from None
    except UserInputError as error:
        raise UserInputError(f"{path}: {error}") from None
    if not isinstance(data, dict):
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
    flat, labels = np.asarray(data[b"data"]), np.asarray(data[b"labels"], dtype=np.int64)
    if flat.dtype != np.uint8 or flat.ndim != 2 or flat.shape[1] != 3 * 32 * 32 or len(flat) != len(labels):
        raise UserInputError(f"{path}: b'data' must be uint8 (N, 3072) with N labels, got {flat.dtype} {flat.shape}")
    return flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def load_cifar10(batches_dir: str | os.PathLike, split: Literal["train", "test"]) -> tuple[np.ndarray, np.ndarray]:
    """All images uint8 (N, 32, 32, 3) and labels int64 (N,) of one split (50,000 train / 10,000 test)."""
    parts = [read_batch(Path(batches_dir) / name) for name in (TRAIN_BATCHES if split == "train" else TEST_BATCHES)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def read_class_names(batches_dir: str | os.PathLike) -> list[str]:
    """The 10 class names from `batches.meta` ("airplane", "automobile", ...), in label order."""
    path = Path(batches_dir) / "batches.meta"
    names = _unpickle(path).get(b"label_names")
    if not isinstance(names, list) or not all(isinstance(name, bytes) for name in names):
        raise UserInputError(f"{path}: expected b'label_names', a list of byte strings")
    return [name.decode() for name in names]


def split_cifar10(
    images: np.ndarray, labels: np.ndarray, num_tasks: int = 5, class_names: Sequence[str] | None = None
) -> TaskSequence:
    """Class-incremental split: task k (1-based) holds classes [(k-1)·g, k·g) with g = 10 / num_tasks.

    Args:
        images: uint8 (N, H, W, C).
        labels: int (N,) class ids 0-9, kept global in every task.
        num_tasks: must divide 10.
        class_names: if given, each label becomes the caption "a photo of a {class_name}" (text conditioning).
    """
    num_classes = 10
    if num_tasks < 1 or num_classes % num_tasks:
        raise UserInputError(
            f"num_tasks must divide the {num_classes} CIFAR-10 classes (1, 2, 5 or 10), got {num_tasks}"
        )
    per_task = num_classes // num_tasks
    tasks = []
    for task_id in range(1, num_tasks + 1):
        keep = (labels >= (task_id - 1) * per_task) & (labels < task_id * per_task)
        task_labels = labels[keep].astype(np.int64)
        if class_names is not None:
            task_labels = np.array([f"a photo of a {class_names[c]}" for c in task_labels])
        tasks.append(Task(task_id, images[keep], task_labels))
    return TaskSequence(tuple(tasks))


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
