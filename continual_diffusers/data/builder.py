"""From labelled images (an image folder, a Hugging Face dataset) to train/test task files in the safe format.

`build_task_files(source, options, output_dir, name, limits)`:

1. resolve the class order and cut it into tasks (`classorder`);
2. split every class into train/test (`test_fraction`, seeded, at least one test image per class);
3. open every image's header (PIL reads no pixels; images a source marks as the same stored value are opened once):
   one channel count for all (`--channels auto`: 1 if every image is grayscale, else 3, grayscale images then copied
   to RGB) and one size for all (`--resolution R`: shorter side resized to R, bilinear with antialiasing as
   `ImageTransform`, then centre-cropped to R×R; without it the images must share a size); every image at most
   `limits.image_pixels` pixels;
4. size every output from those headers before decoding anything: each `.npz` (images and labels) at most the
   task-file cap, a task folder's labels too (they are read whole), and all outputs together at most
   `limits.dataset_bytes`;
5. decode and write each task: into one .npz (`--layout npz`, held in memory) or into a task folder
   (`--layout folder`, written image block by image block, read lazily by `load_tasks`). All outputs are staged in a
   hidden folder and moved into place only when every one is complete (`staging`): a refusal at any step, a broken
   image in the test split included, leaves the output folder as it was (and does not create it).

Labels are the global class ids, or captions: the source's caption column, or `--caption_template` filled with the
class name (the class id where the source has no names). Every problem is a `UserInputError` naming the image.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from continual_diffusers.data.classorder import resolve_class_order, split_classes
from continual_diffusers.data.decode import decode, quiet_pil
from continual_diffusers.data.lazy import write_task_folder
from continual_diffusers.data.limits import DataLimits
from continual_diffusers.data.npz import MAX_BYTES_ENV, max_task_file_bytes
from continual_diffusers.data.staging import StagedOutput
from continual_diffusers.data.task_sequence import Task, TaskSequence
from continual_diffusers.data.tasks import FORMAT, Layout, load_tasks, save_tasks
from continual_diffusers.utils.display import safe_display
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.logging import get_logger
from continual_diffusers.utils.progress import progress_bar

logger = get_logger(__name__)

GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_DECODE_BLOCK = 64
_DECODED_CACHE_BYTES = 64 * 2**20  # decoded images kept for rows that repeat one stored image


@dataclass
class Source:
    """Labelled images, however stored.

    Attributes:
        name: where they come from (for messages; already safe to print).
        labels: int64 (N,) class id of each example.
        class_names: name of each class id (index = id), or None where the source has only ids.
        open_image: i → the i-th image, opened (PIL reads the header, pixels on `load`); raises UserInputError.
        where: i → the i-th example for messages ("cat/1.png", "row 17").
        captions: optional caption of each example (text-conditioned tasks).
        caption_lengths: optional int (N,) characters of each caption (sizes the labels before they are built).
        image_key: optional i → a hashable naming the stored image of example i (rows that share one stored value
            share one key and are opened and decoded once), or None where each example is its own image.
    """

    name: str
    labels: np.ndarray
    class_names: list[str] | None
    open_image: Callable[[int], object]
    where: Callable[[int], str]
    captions: Sequence[str] | None = None
    caption_lengths: np.ndarray | None = None
    image_key: Callable[[int], Hashable] | None = None

    def class_label(self, class_id: int) -> str:
        """The name of a class id, or the id itself where the source has no names."""
        return self.class_names[class_id] if self.class_names is not None else str(class_id)


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
    if options.layout not in ("npz", "folder"):
        raise UserInputError(f"--layout must be npz or folder, got {options.layout!r}")
    template = options.caption_template
    if template is not None and (template.count("{}") != 1 or "{" in template.replace("{}", "")):
        raise UserInputError(f"--caption_template must hold one '{{}}' for the class name, got {template[:80]!r}")


def split_train_test(
    source: Source, classes: Sequence[int], test_fraction: float, seed: int
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """{class: sorted example indices} for train and test; `max(1, round(n·f))` test images per class if f > 0."""
    rng = np.random.default_rng(seed)
    order = np.argsort(source.labels, kind="stable")  # one sort, not one scan of the labels per class
    bounds = np.searchsorted(source.labels[order], np.asarray(sorted(classes), dtype=np.int64), side="left")
    ends = np.searchsorted(source.labels[order], np.asarray(sorted(classes), dtype=np.int64), side="right")
    train, test = {}, {}
    for label, start, end in zip(sorted(classes), bounds, ends):
        members = order[start:end]
        if test_fraction == 0:
            train[label], test[label] = members, members[:0]
            continue
        if len(members) < 2:
            raise UserInputError(
                f"{source.name}: class {source.class_label(label)!r} has {len(members)} image; a test split "
                f"(--test_fraction {test_fraction}) needs at least 2 images per class"
            )
        members = rng.permutation(members)
        num_test = min(len(members) - 1, max(1, round(len(members) * test_fraction)))
        test[label], train[label] = np.sort(members[:num_test]), np.sort(members[num_test:])
    return train, test


def _scan(source: Source, indices: np.ndarray, options: BuildOptions) -> tuple[int, int, int]:
    """(height, width, channels) of the images to write, from their headers."""
    sizes: dict[tuple[int, int], int] = {}
    gray, seen = True, set()
    with progress_bar(indices, desc=f"{source.name}: image sizes", unit="image") as bar:
        for i in bar:
            key = source.image_key(int(i)) if source.image_key is not None else None
            if key is not None:
                if key in seen:
                    continue
                seen.add(key)
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


class DecodedImages:
    """The images of one task, decoded on indexing by slice (what `lazy.write_task_folder` asks for). Rows that
    share a stored image (`Source.image_key`) reuse its decoded array while it is in a 64 MiB cache."""

    def __init__(self, source: Source, indices: np.ndarray, shape: tuple[int, int, int], resolution: int | None):
        self.source, self.indices, self.resolution = source, indices, resolution
        self.shape = (len(indices), *shape)
        self.dtype = np.dtype(np.uint8)
        self._cache: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self.indices)

    def _decoded(self, i: int) -> np.ndarray:
        key = self.source.image_key(i) if self.source.image_key is not None else None
        if key is not None and key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        where = self.source.where(i)
        image = self.source.open_image(i)
        try:
            array = decode(image, self.shape[3], self.resolution, where)
        finally:
            image.close()
        if array.shape != self.shape[1:]:  # the file changed since its header was read
            raise UserInputError(f"{where}: is {array.shape[1]}x{array.shape[0]} now; it changed while being read")
        if key is not None and array.nbytes <= _DECODED_CACHE_BYTES:
            self._cache[key] = array
            while len(self._cache) * array.nbytes > _DECODED_CACHE_BYTES:
                self._cache.popitem(last=False)
        return array

    def __getitem__(self, key: slice) -> np.ndarray:
        rows = self.indices[key]
        out = np.empty((len(rows), *self.shape[1:]), np.uint8)
        for j, i in enumerate(rows):
            out[j] = self._decoded(int(i))
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, np.uint8)
        with progress_bar(range(0, len(self), _DECODE_BLOCK), desc=f"{self.source.name}: decode", unit="block") as bar:
            for start in bar:
                out[start : start + _DECODE_BLOCK] = self[start : start + _DECODE_BLOCK]
        return out


def _caption_chars(source: Source, indices: np.ndarray, options: BuildOptions) -> int:
    """Characters of the longest caption among `indices` (0 for class-id labels)."""
    if not len(indices):
        return 0
    if source.captions is not None:
        if source.caption_lengths is not None:
            return int(source.caption_lengths[indices].max())
        return max(len(source.captions[int(i)]) for i in indices)
    if options.caption_template is not None:
        used = np.unique(source.labels[indices])
        return len(options.caption_template) - 2 + max(len(source.class_label(int(c))) for c in used)
    return 0


def _labels(source: Source, indices: np.ndarray, options: BuildOptions) -> np.ndarray:
    if source.captions is not None:
        return np.array([source.captions[int(i)] for i in indices], dtype=str)
    if options.caption_template is not None:
        names = [source.class_label(int(c)).replace("_", " ") for c in source.labels[indices]]
        return np.array([options.caption_template.replace("{}", name) for name in names], dtype=str)
    return source.labels[indices].astype(np.int64)


def _check_sizes(splits: dict, shape: tuple[int, int, int], source: Source, options, limits: DataLimits) -> None:
    """Every output's size, from the headers, against the task-file cap and the dataset limit (nothing decoded)."""
    cap, total = max_task_file_bytes(), 0
    for split, per_task in splits.items():
        count = sum(len(indices) for indices in per_task)
        everything = np.concatenate(per_task) if per_task else np.zeros(0, np.int64)
        chars = _caption_chars(source, everything, options)
        label_bytes = count * (4 * chars if chars else 8)
        image_bytes = count * int(np.prod(shape))
        if options.layout == "npz" and image_bytes + label_bytes > cap:
            raise UserInputError(
                f"the {split} split holds {(image_bytes + label_bytes) / 2**30:.1f} GiB of images and labels, more "
                f"than one .npz task file may ({cap / 2**30:.1f} GiB, ${MAX_BYTES_ENV}); use --layout folder (read "
                "lazily)"
            )
        if label_bytes > cap:
            raise UserInputError(
                f"the {split} split's labels take {label_bytes} bytes (captions padded to {chars} characters), more "
                f"than a task file may hold ({cap} bytes, ${MAX_BYTES_ENV})"
            )
        total += image_bytes + label_bytes
    if total > limits.dataset_bytes:
        raise UserInputError(f"the task files would take {total} bytes, more than {limits.describe('dataset_bytes')}")


def build_task_files(
    source: Source,
    options: BuildOptions,
    output_dir: str | os.PathLike,
    name: str,
    limits: DataLimits | None = None,
) -> dict[str, Path]:
    """Write `{name}_tasks_train` (and `_test` if `options.test_fraction` > 0), `.npz` or task folders, all or
    nothing (see the module doc).

    Args:
        limits: pixel and size limits; default `DataLimits.from_env()`.

    Returns:
        {"train": path, "test": path}.

    Raises:
        UserInputError: a bad option, an unknown class in the order, a class too small for the split, images of
            different sizes without --resolution, an unreadable or too large image, or an output past its limit.
    """
    _check_options(options)
    if not name or name != Path(name).name or name.startswith(".") or "\x00" in name:
        raise UserInputError(f"--name must be a plain file name (no folder, not hidden): {safe_display(name, 80)!r}")
    limits = limits or DataLimits.from_env()
    order = resolve_class_order(
        np.unique(source.labels).tolist(), options.class_order, options.class_order_seed, source.class_names
    )
    groups = split_classes(order, options.classes_per_task)
    train, test = split_train_test(source, order, options.test_fraction, options.seed)
    members = {"train": train, "test": test} if options.test_fraction > 0 else {"train": train}
    splits = {split: [np.concatenate([of[c] for c in group]) for group in groups] for split, of in members.items()}
    used = np.concatenate([indices for per_task in splits.values() for indices in per_task])
    with quiet_pil():
        return _scan_size_and_write(source, options, order, splits, used, output_dir, name, limits)


def _scan_size_and_write(source, options, order, splits, used, output_dir, name, limits) -> dict[str, Path]:
    shape = _scan(source, used, options)
    _check_sizes(splits, shape, source, options, limits)
    suffix = ".npz" if options.layout == "npz" else ""
    names = {split: f"{name}_tasks_{split}{suffix}" for split in splits}
    with StagedOutput(output_dir, list(names.values())) as output:
        for split, per_task in splits.items():
            try:
                sequence = _write_split(source, options, order, per_task, shape, output.staged(names[split]))
            except MemoryError:  # sizes within the caps, but more than this machine has
                raise UserInputError(
                    f"not enough memory to build {names[split]}; use --layout folder (written block by block), "
                    "--resolution, or fewer images"
                ) from None
            logger.info("%s: %d tasks, %d images", names[split], len(sequence), sum(len(t) for t in sequence))
        final = output.commit()
    return {split: final[names[split]] for split in splits}


def _write_split(source, options, order, per_task, shape, path: Path) -> TaskSequence:
    arrays: dict = {"format": np.array(FORMAT), "class_order": np.array(order, dtype=np.int64)}
    if source.class_names is not None:
        arrays["class_names"] = np.array(source.class_names, dtype=str)
    for task_id, indices in enumerate(per_task, start=1):
        arrays[f"task_{task_id}/images"] = DecodedImages(source, indices, shape, options.resolution)
        arrays[f"task_{task_id}/labels"] = _labels(source, indices, options)
    if options.layout == "folder":
        write_task_folder(path, arrays)
        return load_tasks(path)  # the same validation as any task file
    tasks = [
        Task(task_id, np.asarray(arrays[f"task_{task_id}/images"]), arrays[f"task_{task_id}/labels"])
        for task_id in range(1, len(per_task) + 1)
    ]
    names = tuple(source.class_names) if source.class_names is not None else None
    sequence = TaskSequence(tuple(tasks), tuple(order), names)
    save_tasks(path, sequence)
    return sequence
