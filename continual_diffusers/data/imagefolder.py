"""An image folder (`root/<class>/*.png`, torchvision's ImageFolder layout) as a labelled `builder.Source`.

Classes are the sub-folders of `root`, sorted by name; class id = position in that sorted list. A class folder
holds images (any of `IMAGE_EXTENSIONS`, in nested folders too), taken in sorted path order. Hidden files and
folders (name starting with ".") are skipped. Refused, each with one message: a missing root, no class folders, an
image directly in `root`, an empty class folder, a file that is not an image (by extension) and, when it is opened,
an image PIL cannot read.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from continual_diffusers.data.builder import Source
from continual_diffusers.utils.errors import UserInputError
from continual_diffusers.utils.logging import get_logger

logger = get_logger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _class_files(root: Path, folder: Path) -> list[Path]:
    files = []
    for parent, dirs, names in os.walk(folder):  # symlinked folders are not followed
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(parent) / name
            if not _is_image_name(name):
                raise UserInputError(
                    f"{path.relative_to(root)}: not an image file; a class folder holds only images "
                    f"({', '.join(IMAGE_EXTENSIONS)})"
                )
            files.append(path)
    files.sort()
    return files


def scan_image_folder(root: str | os.PathLike) -> Source:
    """The images of `root/<class>/...` with their class ids (checked; pixels are not read here).

    Raises:
        UserInputError: see the module doc.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserInputError(f"{root}: no such folder (expected root/<class>/<images>)")
    classes, stray = [], []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            classes.append(entry.name)
        elif _is_image_name(entry.name):
            raise UserInputError(f"{root}/{entry.name}: an image directly in the root; put images in class folders")
        else:
            stray.append(entry.name)
    if stray:
        logger.info("%s: ignoring files next to the class folders: %s", root, ", ".join(stray[:5]))
    if not classes:
        raise UserInputError(f"{root}: no class folders (expected root/<class>/<images>)")
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = _class_files(root, root / name)
        if not files:
            raise UserInputError(f"{root}/{name}: empty class folder (no images)")
        paths += files
        labels += [label] * len(files)

    def open_image(i: int):
        from PIL import Image

        try:
            return Image.open(paths[i])
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise UserInputError(f"{paths[i]}: unreadable image ({' '.join(str(error).split())[:150]})") from None

    return Source(
        name=str(root),
        labels=np.array(labels, dtype=np.int64),
        class_names=classes,
        open_image=open_image,
        where=lambda i: str(paths[i].relative_to(root)),
    )
