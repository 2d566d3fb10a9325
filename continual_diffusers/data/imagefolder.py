"""An image folder (`root/<class>/*.png`, torchvision's ImageFolder layout) as a labelled `builder.Source`.

Classes are the sub-folders of `root`, sorted by name; class id = position in that sorted list. A class folder
holds images (any of `IMAGE_EXTENSIONS`, in nested folders too, at most `limits.MAX_FOLDER_DEPTH` deep), taken in
sorted path order. Hidden files and folders (name starting with ".") are skipped. Refused, each with one message
naming the entry: a missing root, no class folders, an image directly in `root`, an empty class folder, a file that
is not an image (by extension), anything that is not a regular file or folder (a FIFO, a device, a socket), a class
folder name that is not valid UTF-8 (class names are written into task files and reports), more than
`DataLimits.images` images and, when it is opened, an image PIL cannot read or one of more than
`DataLimits.image_pixels` pixels (see `decode`).

Symlinks: an entry may be a symlink only if it resolves inside `root` (the folder given), and no folder may be
reached twice (a symlink loop, or one class folder linked under another name); anything else is refused in one line
naming it. So a folder handed over by someone else cannot make the converter read files outside it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from continual_diffusers.data.builder import Source
from continual_diffusers.data.decode import open_image_file
from continual_diffusers.data.limits import MAX_FOLDER_DEPTH, DataLimits
from continual_diffusers.data.task_sequence import MAX_CLASS_ID
from continual_diffusers.utils.display import safe_display
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.files import file_kind
from continual_diffusers.utils.logging import get_logger

logger = get_logger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


class _Walk:
    """The checked walk of one image folder: entries' kinds, symlink targets, depth and the folders seen."""

    def __init__(self, root: Path, limits: DataLimits):
        self.root, self.limits = root, limits
        self.real_root = os.path.realpath(root)
        self.seen: set[str] = {self.real_root}
        self.count = 0

    def shown(self, path: str) -> str:
        """`path` relative to the root, safe to print."""
        return safe_display(os.path.relpath(path, self.root), 300)

    def mode(self, entry: os.DirEntry) -> int:
        """st_mode of what `entry` resolves to; a symlink must resolve inside the root."""
        if entry.is_symlink():
            target = os.path.realpath(entry.path)
            if os.path.commonpath([self.real_root, target]) != self.real_root:
                raise UserInputError(
                    f"{self.shown(entry.path)}: resolves outside {safe_display(self.root, 300)} (to "
                    f"{safe_display(target, 300)}); symlinks in an image folder must stay inside it"
                )
        try:
            return os.stat(entry.path).st_mode
        except OSError as error:
            raise UserInputError(f"{self.shown(entry.path)}: cannot read ({error.strerror or error})") from None

    def enter(self, path: str) -> None:
        """Record a folder about to be listed; a folder reached twice is refused."""
        real = os.path.realpath(path)
        if real in self.seen:
            relative = safe_display(os.path.relpath(real, self.real_root), 300)
            again = "the root folder" if real == self.real_root else relative
            raise UserInputError(
                f"{self.shown(path)}: reaches {again} a second time (a symlink loop, or a folder linked twice); link "
                "each folder at most once"
            )
        self.seen.add(real)

    def class_files(self, folder: str) -> list[str]:
        """The image files under one class folder, sorted; iterative (os.walk recursed once per level)."""
        files, stack = [], [(folder, 0)]
        self.enter(folder)
        while stack:
            parent, depth = stack.pop()
            for entry in _listing(parent):
                mode = self.mode(entry)
                if stat.S_ISDIR(mode):
                    if depth + 1 > MAX_FOLDER_DEPTH:
                        raise UserInputError(
                            f"{self.shown(entry.path)}: nested more than {MAX_FOLDER_DEPTH} folders deep below its "
                            "class folder"
                        )
                    self.enter(entry.path)
                    stack.append((entry.path, depth + 1))
                elif not stat.S_ISREG(mode):
                    raise UserInputError(f"{self.shown(entry.path)}: {file_kind(mode)}, not a regular file")
                elif not _is_image_name(entry.name):
                    raise UserInputError(
                        f"{self.shown(entry.path)}: not an image file; a class folder holds only images "
                        f"({', '.join(IMAGE_EXTENSIONS)})"
                    )
                else:
                    files.append(entry.path)
                    self.count += 1
                    if self.count > self.limits.images:
                        raise UserInputError(
                            f"{safe_display(self.root, 300)}: more than {self.limits.describe('images')} images"
                        )
        files.sort()
        return files


def _listing(folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as error:
        raise UserInputError(f"{safe_display(folder, 300)}: cannot list ({error.strerror or error})") from None


def _class_name(name: str, root: Path) -> str:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UserInputError(
            f"{safe_display(root, 300)}/{safe_display(name, 100)}: the class folder's name is not valid UTF-8; "
            "class names are written into task files and reports, so rename it"
        ) from None
    return name


def scan_image_folder(root: str | os.PathLike, limits: DataLimits | None = None) -> Source:
    """The images of `root/<class>/...` with their class ids (checked; pixels are not read here).

    Args:
        root: the image folder.
        limits: image count and pixel limits; default `DataLimits.from_env()`.

    Raises:
        UserInputError: see the module doc.
    """
    limits = limits or DataLimits.from_env()
    root = Path(root)
    try:
        mode = os.stat(root).st_mode
    except OSError:
        raise UserInputError(f"{safe_display(root, 300)}: no such folder (expected root/<class>/<images>)") from None
    if not stat.S_ISDIR(mode):
        raise UserInputError(
            f"{safe_display(root, 300)}: {file_kind(mode)}, not a folder (expected root/<class>/<images>)"
        )
    walk = _Walk(root, limits)
    classes, stray = [], []
    for entry in _listing(str(root)):
        mode = walk.mode(entry)
        if stat.S_ISDIR(mode):
            classes.append(entry)
        elif _is_image_name(entry.name):
            raise UserInputError(
                f"{walk.shown(entry.path)}: an image directly in the root; put images in class folders"
            )
        else:
            stray.append(safe_display(entry.name, 100))
    if stray:
        logger.info("%s: ignoring files next to the class folders: %s", safe_display(root, 300), ", ".join(stray[:5]))
    if not classes:
        raise UserInputError(f"{safe_display(root, 300)}: no class folders (expected root/<class>/<images>)")
    if len(classes) > MAX_CLASS_ID + 1:
        raise UserInputError(f"{safe_display(root, 300)}: {len(classes)} class folders; ids end at {MAX_CLASS_ID}")
    names = [_class_name(entry.name, root) for entry in classes]
    paths, labels = [], []
    for label, entry in enumerate(classes):
        files = walk.class_files(entry.path)
        if not files:
            raise UserInputError(f"{walk.shown(entry.path)}: empty class folder (no images)")
        paths += files
        labels += [label] * len(files)

    def where(i: int) -> str:
        return walk.shown(paths[i])

    return Source(
        name=safe_display(root, 300),
        labels=np.array(labels, dtype=np.int64),
        class_names=names,
        open_image=lambda i: open_image_file(paths[i], where(i), limits),
        where=where,
    )
