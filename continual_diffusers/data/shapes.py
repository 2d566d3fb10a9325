"""A synthetic multi-object data set: a few coloured shapes on a black canvas, with ground-truth object masks.

Made for object-centric (slot) models: objects never overlap and keep a one-pixel gap, every object of an image has
its own colour, and each image comes with an instance mask (0 = background, i = object i), so unsupervised
segmentations can be scored (FG-ARI, `evaluation/slots.py`). Tasks differ by object type (`split="shape"`: task k
draws only shape k) or by colour (`split="colour"`: task k draws from its own disjoint colour group).

Files: the images are an ordinary task file (safe format, no labels: a slot model conditions on the image itself);
the masks sit alongside it in `<name>.masks.npz` (`format` = "continual-diffusers/masks-v1", `task_<id>/masks`
uint8 (N, H, W)), because the task-file format admits only images and labels.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import numpy as np

from continual_diffusers.data.npz import NpzError, read_npz
from continual_diffusers.data.pickle_values import short_repr
from continual_diffusers.data.task_sequence import Task, TaskFileError, TaskSequence
from continual_diffusers.data.tasks import save_tasks
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.logging import get_logger

logger = get_logger(__name__)

SHAPES = ("square", "circle", "triangle", "cross")
COLOURS = {
    "red": (255, 40, 40),
    "green": (40, 220, 40),
    "blue": (60, 90, 255),
    "yellow": (250, 230, 30),
    "magenta": (240, 40, 240),
    "cyan": (30, 230, 230),
    "white": (245, 245, 245),
    "orange": (255, 140, 0),
}
MASKS_FORMAT = "continual-diffusers/masks-v1"
_MASK_KEY = re.compile(r"task_([0-9]+)/masks")
Split = Literal["shape", "colour"]


def shape_mask(shape: str, size: int) -> np.ndarray:
    """Boolean (size, size) stencil of `shape` filling its box (size >= 3)."""
    if size < 3:
        raise ValueError(f"shapes need a box of at least 3 pixels, got {size}")
    yy, xx = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2.0
    if shape == "square":
        return np.ones((size, size), dtype=bool)
    if shape == "circle":
        return (yy - c) ** 2 + (xx - c) ** 2 <= (size / 2.0) ** 2
    if shape == "triangle":  # apex at the top, base on the bottom row
        return np.abs(xx - c) <= (yy + 1) * (size / 2.0) / size
    if shape == "cross":
        arm = max(1, size // 3)
        lo = (size - arm) // 2
        return ((xx >= lo) & (xx < lo + arm)) | ((yy >= lo) & (yy < lo + arm))
    raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")


def make_scene(
    rng: np.random.Generator,
    resolution: int,
    shapes: list[str],
    colours: list[str],
    num_objects: int,
    size_range: tuple[int, int],
    max_tries: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    """One image: `num_objects` non-overlapping shapes (a 1-pixel gap between boxes), distinct colours.

    Returns:
        image uint8 (H, W, 3) on black, mask uint8 (H, W): 0 background, i for the i-th object.
    """
    if num_objects > len(colours):
        raise UserInputError(f"{num_objects} objects need as many distinct colours, the task has {len(colours)}")
    for _ in range(max_tries):  # an unlucky first placement can block the rest: start the scene over
        boxes = _place_boxes(rng, resolution, num_objects, size_range, max_tries)
        if boxes is not None:
            break
    else:
        raise UserInputError(
            f"cannot place {num_objects} shapes of {size_range[0]}-{size_range[1]} px on a {resolution}px canvas; "
            "use fewer or smaller objects or a larger resolution"
        )
    image = np.zeros((resolution, resolution, 3), dtype=np.uint8)
    mask = np.zeros((resolution, resolution), dtype=np.uint8)
    picked = rng.choice(len(colours), size=num_objects, replace=False)
    for i, (top, left, size) in enumerate(boxes):
        stencil = shape_mask(shapes[int(rng.integers(len(shapes)))], size)
        box = (slice(top, top + size), slice(left, left + size))
        image[box][stencil] = COLOURS[colours[picked[i]]]
        mask[box][stencil] = i + 1
    return image, mask


def _place_boxes(rng, resolution: int, num: int, size_range: tuple[int, int], max_tries: int):
    """`num` (top, left, size) boxes with a one-pixel gap between any two, or None if they did not fit."""
    taken = np.zeros((resolution + 2, resolution + 2), dtype=bool)  # boxes grown by one pixel (the gap)
    boxes = []
    for _ in range(num):
        for _ in range(max_tries):
            size = int(rng.integers(size_range[0], size_range[1] + 1))
            top, left = (int(v) for v in rng.integers(0, resolution - size + 1, size=2))
            if not taken[top : top + size + 2, left : left + size + 2].any():
                break
        else:
            return None
        taken[top + 1 : top + size + 1, left + 1 : left + size + 1] = True
        boxes.append((top, left, size))
    return boxes


def task_vocabulary(task_index: int, num_tasks: int, split: Split) -> tuple[list[str], list[str]]:
    """(shapes, colours) allowed in task `task_index` (0-based)."""
    if split == "shape":
        if num_tasks > len(SHAPES):
            raise UserInputError(f"split 'shape' has {len(SHAPES)} shapes {SHAPES}, so at most {len(SHAPES)} tasks")
        return [SHAPES[task_index]], list(COLOURS)
    if split == "colour":
        names = list(COLOURS)
        per_task = len(names) // num_tasks
        if per_task < 1:
            raise UserInputError(f"split 'colour' has {len(names)} colours, so at most {len(names)} tasks")
        return list(SHAPES), names[task_index * per_task : (task_index + 1) * per_task]
    raise UserInputError(f"split must be 'shape' or 'colour', got {split!r}")


def make_shapes_tasks(
    num_tasks: int = 2,
    num_per_task: int = 256,
    resolution: int = 16,
    split: Split = "shape",
    num_objects: tuple[int, int] = (1, 3),
    size_range: tuple[int, int] = (4, 6),
    seed: int = 0,
) -> tuple[TaskSequence, dict[int, np.ndarray]]:
    """`num_tasks` tasks of `num_per_task` scenes each (see the module docstring).

    Args:
        num_objects: (min, max) objects per image, drawn uniformly.
        size_range: (min, max) side of an object's box in pixels.
        seed: numpy seed; the same arguments always give the same data.

    Returns:
        (tasks without labels, {task_id: uint8 (N, H, W) instance masks}).
    """
    lo, hi = num_objects
    if num_tasks < 1 or num_per_task < 1 or not 1 <= lo <= hi or not 3 <= size_range[0] <= size_range[1]:
        raise UserInputError(
            "need num_tasks >= 1, num_per_task >= 1, 1 <= min objects <= max objects and 3 <= min size <= max size"
        )
    if size_range[1] > resolution:
        raise UserInputError(f"objects up to {size_range[1]} px do not fit a {resolution} px canvas")
    rng = np.random.default_rng(seed)
    tasks, masks = [], {}
    for k in range(num_tasks):
        shapes, colours = task_vocabulary(k, num_tasks, split)
        scenes = [
            make_scene(rng, resolution, shapes, colours, int(rng.integers(lo, hi + 1)), size_range)
            for _ in range(num_per_task)
        ]
        tasks.append(Task(k + 1, np.stack([s[0] for s in scenes])))
        masks[k + 1] = np.stack([s[1] for s in scenes])
    return TaskSequence(tuple(tasks)), masks


def masks_path(task_path: str | os.PathLike) -> Path:
    """Where the masks of a task file live: `x.npz` → `x.masks.npz`."""
    path = Path(task_path)
    stem = path.name[: -len(".npz")] if path.name.endswith(".npz") else path.name
    return path.with_name(stem + ".masks.npz")


def save_masks(path: str | os.PathLike, masks: dict[int, np.ndarray]) -> None:
    """Write {task_id: uint8 (N, H, W)} instance masks (no pickle)."""
    arrays = {"format": np.array(MASKS_FORMAT)}
    arrays.update({f"task_{k}/masks": np.asarray(v, dtype=np.uint8) for k, v in masks.items()})
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def load_masks(path: str | os.PathLike, tasks: TaskSequence | None = None) -> dict[int, np.ndarray]:
    """Read masks written by `save_masks`; with `tasks`, check one (H, W) mask per image of every task."""
    if not os.path.isfile(path):
        raise UserInputError(f"{path}: no mask file (write one with python -m continual_diffusers.data shapes)")
    try:  # the bounded reader of task files (sizes checked before allocating, no pickle)
        arrays = read_npz(path)
    except NpzError as error:
        raise TaskFileError(f"{path}: {error}") from None
    version = arrays.get("format")
    if version is None or version.ndim != 0 or version.dtype.kind != "U" or str(version) != MASKS_FORMAT:
        raise TaskFileError(f"{path}: not a mask file (expected format {MASKS_FORMAT!r})")
    masks = {}
    for key, value in arrays.items():
        match = _MASK_KEY.fullmatch(key)
        if key != "format" and (match is None or len(match.group(1)) > 12 or value is None):
            raise TaskFileError(f"{path}: unexpected key {short_repr(key)}; expected 'task_<id>/masks' uint8 arrays")
        if match:
            masks[int(match.group(1))] = value
    for task in tasks or ():
        got = masks.get(task.task_id)
        want = task.images.shape[:3]
        if got is None or got.shape != want or got.dtype != np.uint8:
            what = "missing" if got is None else f"{got.dtype} {got.shape}"
            raise TaskFileError(f"{path}: task {task.task_id} masks must be uint8 {want}, got {what}")
    return masks


def write_shapes(output_dir: str | os.PathLike, num_train: int = 512, num_test: int = 128, **kwargs) -> list[Path]:
    """Write shapes_tasks_{train,test}.npz and their .masks.npz to `output_dir` (train and test use different
    seeds). `kwargs` go to `make_shapes_tasks`. Returns the two task-file paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    seed = kwargs.pop("seed", 0)
    paths = []
    for name, num, offset in (("train", num_train, 0), ("test", num_test, 1)):
        tasks, masks = make_shapes_tasks(num_per_task=num, seed=seed * 2 + offset, **kwargs)
        path = output_dir / f"shapes_tasks_{name}.npz"
        save_tasks(path, tasks)
        save_masks(masks_path(path), masks)
        logger.info("wrote %s (+ masks): %d tasks × %d images", path, len(tasks), num)
        paths.append(path)
    return paths
