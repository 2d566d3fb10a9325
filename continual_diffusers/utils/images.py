"""Writing sample grids to disk as PNG (no torchvision)."""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from PIL import Image


def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) floats in [-1, 1] → (N, H, W, C) uint8."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def make_grid(images: torch.Tensor, nrow: int, padding: int = 1) -> np.ndarray:
    """Tile (N, C, H, W) images in [-1, 1] into one (H', W', C) uint8 array, `nrow` images per row."""
    arr = to_uint8_nhwc(images)
    n, h, w, c = arr.shape
    rows = math.ceil(n / nrow)
    grid = np.zeros((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[y : y + h, x : x + w] = arr[i]
    return grid


def save_grid(images: torch.Tensor, path: str, nrow: int, min_size: int = 256) -> str:
    """Save a grid PNG of (N, C, H, W) images in [-1, 1], `nrow` per row (`write_grid`)."""
    return write_grid(make_grid(images, nrow), path, min_size)


def write_grid(grid: np.ndarray, path: str, min_size: int = 256, row_labels: list[str] | None = None) -> str:
    """Save a `make_grid` array as PNG; small images are upscaled (nearest) so it is at least `min_size` px wide.
    `row_labels`: one text per grid row, written in a margin left of it (`label_rows`)."""
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    scale = max(1, math.ceil(min_size / img.width))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    if row_labels:
        img = label_rows(img, row_labels)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    img.save(path)
    return path


def label_rows(img: Image.Image, labels: list[str], font_size: int = 14) -> Image.Image:
    """`img` (a grid of len(labels) equal rows) with a white margin on its left holding each row's label, black,
    vertically centred on the row."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default(size=font_size)
    measure = ImageDraw.Draw(img)
    width = max(measure.textlength(text, font=font) for text in labels)
    margin = int(width) + font_size
    white, black = (255, 0) if img.mode == "L" else ((255,) * 3, (0,) * 3)
    out = Image.new(img.mode, (img.width + margin, img.height), white)
    out.paste(img, (margin, 0))
    draw = ImageDraw.Draw(out)
    row_height = img.height / len(labels)
    for r, text in enumerate(labels):
        draw.text((font_size // 2, (r + 0.5) * row_height), text, fill=black, font=font, anchor="lm")
    return out


def row_label(label, class_names: list[str] | None = None, task_of: dict[int, int] | None = None) -> str:
    """How a grid row sampled with `label` is named: "task 1 · class 3 (three)" for a class id (its task and name
    when known), the prompt's first 24 characters, or "unconditional" for None."""
    if label is None:
        return "unconditional"
    if isinstance(label, str):
        return label if len(label) <= 24 else label[:23] + "…"
    text = f"class {label}"
    if class_names and 0 <= label < len(class_names):
        text += f" ({class_names[label][:16]})"
    if task_of and label in task_of:
        text = f"task {task_of[label]} · {text}"
    return text


def grid_row_labels(rows: list, spec=None) -> list[str] | None:
    """The text beside each row of a sample grid sampled with `rows` (one condition per row; `row_label`: a class
    id with its task and the task file's class name, a prompt, "unconditional"), from a model's `ModelSpec`
    (`classes_per_task`, `class_names`; None: the class ids alone); None for rows of other conditions (slot sets)."""
    if not all(row is None or isinstance(row, int | str) for row in rows):
        return None
    if spec is None:
        return [row_label(row) for row in rows]
    task_of = {c: int(t) for t, classes in spec.classes_per_task.items() for c in classes}
    names = list(spec.class_names) if spec.class_names else None
    return [row_label(row, names, task_of) for row in rows]
