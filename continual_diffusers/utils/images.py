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


def write_grid(grid: np.ndarray, path: str, min_size: int = 256) -> str:
    """Save a `make_grid` array as PNG; small images are upscaled (nearest) so it is at least `min_size` px wide."""
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    scale = max(1, math.ceil(min_size / img.width))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    img.save(path)
    return path
