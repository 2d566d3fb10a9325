"""The bundled offline default data: scikit-learn's 8×8 handwritten digits as a class-incremental task sequence.

`sklearn.datasets.load_digits` ships 1,797 real 8×8 grayscale images (10 classes) inside scikit-learn, so the demo
and the tests need no download. By default task k holds a contiguous group of classes (classes 2k-2 and 2k-1 for 5
tasks); a class order and a number of classes per task give any other split (`classorder`). Labels stay global
(0-9); the resolved class order is recorded in the task files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from continual_diffusers.data.classorder import classes_per_task_from, resolve_class_order, split_classes
from continual_diffusers.data.task_sequence import Task, TaskSequence
from continual_diffusers.data.tasks import save_tasks
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.logging import get_logger

logger = get_logger(__name__)

NUM_CLASSES = 10
TRAIN_FILE = "digits_tasks_train.npz"
TEST_FILE = "digits_tasks_test.npz"


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """uint8 (1797, 8, 8, 1) images (0..16 scaled to 0..255) and int64 (1797,) labels."""
    # Imported here so that `import continual_diffusers.data` does not pay for importing scikit-learn.
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return images, digits.target.astype(np.int64)


def load_split_digits(
    num_tasks: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    classes_per_task: int | None = None,
    class_order: str | list | None = None,
    class_order_seed: int | None = None,
) -> tuple[TaskSequence, TaskSequence]:
    """Split digits into class-incremental tasks, each with a stratified train/test split.

    Args:
        num_tasks: number of tasks; must divide the 10 classes (1, 2, 5 or 10); default 5 unless
            `classes_per_task` is given.
        test_fraction: share of each class held out for the test sequence, in (0, 1).
        seed: seed of the numpy generator that shuffles each class before splitting (deterministic).
        classes_per_task: classes per task, cut from the class order (the last task may hold fewer).
        class_order: the class order ("3,1,..." or a list of ids); default 0..9.
        class_order_seed: a random class order instead: numpy `default_rng(seed).permutation(10)`.

    Returns:
        (train, test) task sequences with the same task ids and classes; images uint8 (N, 8, 8, 1), labels int64.

    Raises:
        UserInputError: `num_tasks` does not divide 10, or `test_fraction` is outside (0, 1).
    """
    if classes_per_task is None:
        num_tasks = 5 if num_tasks is None else num_tasks
        if num_tasks < 1 or NUM_CLASSES % num_tasks:
            raise UserInputError(
                f"num_tasks must divide the {NUM_CLASSES} digit classes (1, 2, 5 or 10), got {num_tasks}"
            )
    per_task = classes_per_task_from(NUM_CLASSES, num_tasks, classes_per_task)
    order = resolve_class_order(range(NUM_CLASSES), class_order, class_order_seed, [str(c) for c in range(10)])
    if not 0.0 < test_fraction < 1.0:
        raise UserInputError(f"test_fraction must be in (0, 1), got {test_fraction}")
    images, labels = _load_digits()
    rng = np.random.default_rng(seed)
    train_index, test_index = {}, {}
    for label in range(NUM_CLASSES):
        members = rng.permutation(np.flatnonzero(labels == label))
        num_test = max(1, round(len(members) * test_fraction))
        test_index[label], train_index[label] = np.sort(members[:num_test]), np.sort(members[num_test:])
    splits = []
    for index in (train_index, test_index):
        tasks = []
        for task_id, group in enumerate(split_classes(order, per_task), start=1):
            keep = np.concatenate([index[c] for c in group])
            tasks.append(Task(task_id, images[keep], labels[keep]))
        splits.append(TaskSequence(tuple(tasks), tuple(order), tuple(str(c) for c in range(NUM_CLASSES))))
    return splits[0], splits[1]


def write_split_digits(output_dir: str | os.PathLike, **kwargs) -> tuple[Path, Path]:
    """Write `load_split_digits(**kwargs)` to `output_dir` (created if needed) in the safe task-file format.

    Returns:
        The paths of `digits_tasks_train.npz` and `digits_tasks_test.npz`.
    """
    train, test = load_split_digits(**kwargs)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = output_dir / TRAIN_FILE, output_dir / TEST_FILE
    for path, sequence in zip(paths, (train, test), strict=True):
        save_tasks(path, sequence)
        logger.info("wrote %s: %d tasks, %d images", path, len(sequence), sum(len(task) for task in sequence))
    return paths
