"""From labelled images (an image folder, a Hugging Face dataset) to train/test task files in the safe format.

`build_task_files(source, options, output_dir, name)`:

1. resolve the class order and cut it into tasks (`classorder`);
2. split every class into train/test (`test_fraction`, seeded, at least one test image per class);
3. open every image's header (PIL reads no pixels): one channel count for all (`--channels auto`: 1 if every image
   is grayscale, else 3, grayscale images then copied to RGB) and one size for all (`--resolution R`: shorter side
   resized to R, bilinear with antialiasing as `ImageTransform`, then centre-cropped to R×R; without it the images
   must share a size);
4. decode and write each task: into one .npz (`--layout npz`, held in memory, at most the task-file cap) or into a
   task folder (`--layout folder`, written image block by image block, read lazily by `load_tasks`).

Labels are the global class ids, or captions: the source's caption column, or `--caption_template` filled with the
class name. Every problem is a `UserInputError` naming the image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from continual_diffusers.data.classorder import resolve_class_order, split_classes
from continual_diffusers.data.lazy import write_task_folder
from continual_diffusers.data.npz import MAX_BYTES_ENV, max_task_file_bytes
from continual_diffusers.data.tasks import FORMAT, Layout, Task, TaskSequence, load_tasks, save_tasks
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.logging import get_logger
from continual_diffusers.utils.progress import progress_bar

logger = get_logger(__name__)

GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_DECODE_BLOCK = 64


@dataclass
class Source:
    """Labelled images, however stored.

    Attributes:
        name: where they come from (for messages).
        labels: int64 (N,) class id of each example.
        class_names: name of each class id (index = id).
        open_image: i → the i-th image, opened (PIL reads the header, pixels on `load`); raises UserInputError.
        where: i → the i-th example for messages ("cat/1.png", "row 17").
        captions: optional caption of each example (text-conditioned tasks).
    """

    name: str
    labels: np.ndarray
    class_names: list[str]
    open_image: Callable[[int], object]
    where: Callable[[int], str]
    captions: Sequence[str] | None = None


@dataclass
class BuildOptions:
    classes_per_task: int
    class_order: str | None = None
    class_order_seed: int | None = None
    resolution: int | None = None
    channels: str = "auto"  # "auto", "1" or "3"
    test_fraction: float = 0.0
    seed: int = 0
    caption_template: str | None = None
    layout: Layout = "npz"


def _check_options(options: BuildOptions) -> None:
    if not 0.0 <= options.test_fraction < 1.0:
        raise UserInputError(f"--test_fraction must be in [0, 1), got {options.test_fraction}")
    if options.resolution is not None and not 1 <= options.resolution <= 4096:
        raise UserInputError(f"--resolution must be in 1..4096, got {options.resolution}")
    if options.channels not in ("auto", "1", "3"):
        raise UserInputError(f"--channels must be auto, 1 or 3, got {options.channels!r}")
    template = options.caption_template
    if template is not None and (template.count("{}") != 1 or "{" in template.replace("{}", "")):
        raise UserInputError(f"--caption_template must hold one '{{}}' for the class name, got {template[:80]!r}")


def split_train_test(
    source: Source, classes: Sequence[int], test_fraction: float, seed: int
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """{class: sorted example indices} for train and test; `max(1, round(n·f))` test images per class if f > 0."""
    rng = np.random.default_rng(seed)
    train, test = {}, {}
    for label in sorted(classes):
        members = np.flatnonzero(source.labels == label)
        if test_fraction == 0:
            train[label], test[label] = members, members[:0]
            continue
        if len(members) < 2:
            raise UserInputError(
                f"{source.name}: class {source.class_names[label]!r} has {len(members)} image; a test split "
                f"(--test_fraction {test_fraction}) needs at least 2 images per class"
            )
        members = rng.permutation(members)
        num_test = min(len(members) - 1, max(1, round(len(members) * test_fraction)))
        test[label], train[label] = np.sort(members[:num_test]), np.sort(members[num_test:])
    return train, test


def _scan(source: Source, indices: np.ndarray, options: BuildOptions) -> tuple[int, int, int]:
    """(height, width, channels) of the images to write, from their headers."""
    sizes: dict[tuple[int, int], int] = {}
    gray = True
    with progress_bar(indices, desc=f"{source.name}: image sizes", unit="image") as bar:
        for i in bar:
            image = source.open_image(int(i))
            sizes.setdefault(tuple(image.size), int(i))
            gray = gray and image.mode in GRAY_MODES
            image.close()
    channels = int(options.channels) if options.channels != "auto" else (1 if gray else 3)
    if options.resolution is not None:
        return options.resolution, options.resolution, channels
    if len(sizes) > 1:
        (size_a, a), (size_b, b) = list(sizes.items())[:2]
        raise UserInputError(
            f"{source.name}: images differ in size ({source.where(a)} is {size_a[0]}x{size_a[1]}, "
            f"{source.where(b)} is {size_b[0]}x{size_b[1]}); pass --resolution R to resize the shorter side to R "
            "and centre-crop to RxR"
        )
    width, height = next(iter(sizes))
    return height, width, channels


def to_array(image, channels: int, resolution: int | None, where: str) -> np.ndarray:
    """A PIL image → uint8 (H, W, C): converted to L or RGB, optionally resized (shorter side) and centre-cropped."""
    from PIL import Image

    try:
        image.load()
        image = image.convert("L" if channels == 1 else "RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UserInputError(f"{where}: unreadable image ({' '.join(str(error).split())[:150]})") from None
    if resolution is not None:
        width, height = image.size
        short, long = min(width, height), max(width, height)
        if short != resolution:
            new_long = int(resolution * long / short)
            size = (new_long, resolution) if height <= width else (resolution, new_long)
            image = image.resize(size, Image.BILINEAR)
        width, height = image.size
        top, left = int(round((height - resolution) / 2.0)), int(round((width - resolution) / 2.0))
        image = image.crop((left, top, left + resolution, top + resolution))
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


class DecodedImages:
    """The images of one task, decoded on indexing by slice (what `lazy.write_task_folder` asks for)."""

    def __init__(self, source: Source, indices: np.ndarray, shape: tuple[int, int, int], resolution: int | None):
        self.source, self.indices, self.resolution = source, indices, resolution
        self.shape = (len(indices), *shape)
        self.dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: slice) -> np.ndarray:
        rows = self.indices[key]
        out = np.empty((len(rows), *self.shape[1:]), np.uint8)
        for j, i in enumerate(rows):
            image = self.source.open_image(int(i))
            try:
                out[j] = to_array(image, self.shape[3], self.resolution, self.source.where(int(i)))
            finally:
                image.close()
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, np.uint8)
        with progress_bar(range(0, len(self), _DECODE_BLOCK), desc=f"{self.source.name}: decode", unit="block") as bar:
            for start in bar:
                out[start : start + _DECODE_BLOCK] = self[start : start + _DECODE_BLOCK]
        return out


def _labels(source: Source, indices: np.ndarray, options: BuildOptions) -> np.ndarray:
    if source.captions is not None:
        return np.array([source.captions[int(i)] for i in indices], dtype=str)
    if options.caption_template is not None:
        names = [source.class_names[int(c)].replace("_", " ") for c in source.labels[indices]]
        return np.array([options.caption_template.replace("{}", name) for name in names], dtype=str)
    return source.labels[indices].astype(np.int64)


def build_task_files(
    source: Source, options: BuildOptions, output_dir: str | os.PathLike, name: str
) -> dict[str, Path]:
    """Write `{name}_tasks_train` (and `_test` if `options.test_fraction` > 0), `.npz` or task folders.

    Returns:
        {"train": path, "test": path}.

    Raises:
        UserInputError: a bad option, an unknown class in the order, a class too small for the split, images of
            different sizes without --resolution, an unreadable image, or a split too big for one .npz.
    """
    _check_options(options)
    order = resolve_class_order(
        np.unique(source.labels).tolist(), options.class_order, options.class_order_seed, source.class_names
    )
    groups = split_classes(order, options.classes_per_task)
    train, test = split_train_test(source, order, options.test_fraction, options.seed)
    splits = {"train": train, "test": test} if options.test_fraction > 0 else {"train": train}
    used = np.concatenate([members for split in splits.values() for members in split.values()])
    height, width, channels = _scan(source, used, options)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, members in splits.items():
        per_task = [np.concatenate([members[c] for c in group]) for group in groups]
        total = sum(len(indices) for indices in per_task) * height * width * channels
        if options.layout == "npz" and total > max_task_file_bytes():
            raise UserInputError(
                f"the {split} split holds {total / 2**30:.1f} GiB of images, more than one .npz task file may "
                f"({max_task_file_bytes() / 2**30:.1f} GiB, ${MAX_BYTES_ENV}); use --layout folder (read lazily)"
            )
        arrays: dict = {
            "format": np.array(FORMAT),
            "class_order": np.array(order, dtype=np.int64),
            "class_names": np.array(source.class_names, dtype=str),
        }
        for task_id, indices in enumerate(per_task, start=1):
            shape = (height, width, channels)
            arrays[f"task_{task_id}/images"] = DecodedImages(source, indices, shape, options.resolution)
            arrays[f"task_{task_id}/labels"] = _labels(source, indices, options)
        if options.layout == "folder":
            path = output_dir / f"{name}_tasks_{split}"
            write_task_folder(path, arrays)
            sequence = load_tasks(path)  # the same validation as any task file
        else:
            path = output_dir / f"{name}_tasks_{split}.npz"
            tasks = [
                Task(task_id, np.asarray(arrays[f"task_{task_id}/images"]), arrays[f"task_{task_id}/labels"])
                for task_id in range(1, len(per_task) + 1)
            ]
            sequence = TaskSequence(tuple(tasks), tuple(order), tuple(source.class_names))
            save_tasks(path, sequence)
        logger.info("wrote %s: %d tasks, %d images", path, len(sequence), sum(len(t) for t in sequence))
        written[split] = path
    return written


def order_summary(class_order: Sequence[int], class_names: Sequence[str] | None, classes_per_task: int) -> str:
    """'task 1: 2 (c), 0 (a); task 2: 1 (b)': the tasks a class order gives, with names."""

    def show(c: int) -> str:
        return f"{c} ({class_names[c]})" if class_names is not None and c < len(class_names) else str(c)

    groups = split_classes(list(class_order), classes_per_task)
    return "; ".join(f"task {k}: {', '.join(show(c) for c in group)}" for k, group in enumerate(groups, start=1))
