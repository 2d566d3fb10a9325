"""Class-incremental splits as data: a class order and a number of classes per task.

As in avalanche (`fixed_class_order` / `seed`) and mammoth (`N_CLASSES_PER_TASK`): the classes are put in an order,
then cut into tasks of `classes_per_task` classes each, task 1 taking the first ones; a last task may hold fewer.

- no order given: the class ids in increasing order (0, 1, 2, ...);
- `--class_order 3,1,0,2`: that order; items are class names (an image folder's sub-folder names) if every item is
  one, else class ids; classes left out are not used;
- `--class_order_seed S`: `numpy.random.default_rng(S).permutation(class ids)`.

Labels stay global class ids; the resolved order is recorded in the task file (`TaskSequence.class_order`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from continual_diffusers.utils.display import safe_display
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.logging import get_logger

logger = get_logger(__name__)


def parse_class_order(text: str | Sequence | None) -> list[str] | None:
    """`"3,1,2"` (or a list) → its items as stripped strings; None stays None."""
    if text is None:
        return None
    items = [str(item).strip() for item in (text.split(",") if isinstance(text, str) else text)]
    if not items or any(not item for item in items):
        raise UserInputError(f"--class_order must be a comma-separated list of classes, got {str(text)[:80]!r}")
    return items


def resolve_class_order(
    class_ids: Sequence[int],
    class_order: str | Sequence | None = None,
    seed: int | None = None,
    class_names: Sequence[str] | None = None,
) -> list[int]:
    """The class order: `class_order` (names or ids), a seeded permutation, or `class_ids` sorted.

    Args:
        class_ids: the class ids there are data for.
        class_order: comma-separated string or list of class names or ids (see the module doc).
        seed: draw a random order with numpy's `default_rng(seed)` instead.
        class_names: name of each class id (index = id), to accept names in `class_order`.

    Raises:
        UserInputError: both `class_order` and `seed`; an unknown, repeated or data-less class.
    """
    available = sorted(int(c) for c in set(class_ids))
    if class_order is not None and seed is not None:
        raise UserInputError("give --class_order or --class_order_seed, not both")
    if seed is not None:
        return [int(c) for c in np.random.default_rng(seed).permutation(np.array(available, dtype=np.int64))]
    items = parse_class_order(class_order)
    if items is None:
        return available
    by_name = {name: i for i, name in enumerate(class_names or [])}
    if by_name and all(item in by_name for item in items):
        order = [by_name[item] for item in items]
    else:
        bad = [item for item in items if not item.lstrip("-").isdigit() or len(item) > 9]
        bad = [item for item in bad if item not in by_name] or bad  # name the item that is neither
        if bad:
            names = ", ".join(safe_display(name, 60) for name in list(by_name)[:10])
            known = f" (class names: {names}{', ...' if len(by_name) > 10 else ''})"
            raise UserInputError(f"--class_order: unknown class {bad[0][:60]!r}{known if by_name else ''}")
        order = [int(item) for item in items]
    repeated = sorted(c for c, count in Counter(order).items() if count > 1)
    if repeated:
        raise UserInputError(f"--class_order lists class {repeated[0]} more than once")
    with_images = set(available)
    missing = [c for c in order if c not in with_images]
    if missing:
        shown = ", ".join(map(str, available[:20])) + (", ..." if len(available) > 20 else "")
        raise UserInputError(f"--class_order: class {missing[0]} has no images (classes with images: {shown})")
    left_out = sorted(with_images - set(order))
    if left_out:
        shown = ", ".join(map(str, left_out[:20])) + (", ..." if len(left_out) > 20 else "")
        logger.info("--class_order leaves out %d classes (%s); they are not used", len(left_out), shown)
    return order


def split_classes(order: Sequence[int], classes_per_task: int) -> list[list[int]]:
    """Cut `order` into tasks of `classes_per_task` classes (task 1 first); the last task may hold fewer."""
    if classes_per_task < 1:
        raise UserInputError(f"--classes_per_task must be >= 1, got {classes_per_task}")
    return [list(order[i : i + classes_per_task]) for i in range(0, len(order), classes_per_task)]


def classes_per_task_from(num_classes: int, num_tasks: int | None, classes_per_task: int | None) -> int:
    """`classes_per_task` from either flag: `--num_tasks` must divide the classes; both must agree if given."""
    if classes_per_task is not None:
        if num_tasks is not None and -(-num_classes // classes_per_task) != num_tasks:
            raise UserInputError(
                f"--num_tasks {num_tasks} and --classes_per_task {classes_per_task} disagree for {num_classes} "
                "classes; give one of them"
            )
        return classes_per_task
    if num_tasks is None or num_tasks < 1 or num_classes % num_tasks:
        raise UserInputError(f"num_tasks must divide the {num_classes} classes, got {num_tasks}")
    return num_classes // num_tasks


def order_summary(class_order: Sequence[int], class_names: Sequence[str] | None, classes_per_task: int) -> str:
    """'task 1: 2 (c), 0 (a); task 2: 1 (b)': the tasks a class order gives, with names."""

    def show(c: int) -> str:
        if class_names is not None and c < len(class_names):
            return f"{c} ({safe_display(class_names[c], 100)})"
        return str(c)

    groups = split_classes(list(class_order), classes_per_task)
    return "; ".join(f"task {k}: {', '.join(show(c) for c in group)}" for k, group in enumerate(groups, start=1))
