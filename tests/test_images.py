"""Sample grids: one tiling serves the PNG and the TensorBoard image (`training/validation.py`)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from continual_diffusers.utils.images import make_grid, save_grid, write_grid


def test_the_png_is_the_tiled_grid_upscaled(tmp_path):
    images = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    grid = make_grid(images, nrow=2)  # 3 rows of 2 (the last one short), 1 px padding
    assert grid.shape == (3 * 9 + 1, 2 * 9 + 1, 3) and not grid[-9:, -9:].any()
    png = np.asarray(Image.open(write_grid(grid, str(tmp_path / "a" / "grid.png"), min_size=64)))
    scale = -(-64 // grid.shape[1])  # nearest-neighbour upscaling to at least 64 px wide
    assert png.shape == (grid.shape[0] * scale, grid.shape[1] * scale, 3)
    np.testing.assert_array_equal(png[::scale, ::scale], grid)
    again = np.asarray(Image.open(save_grid(images, str(tmp_path / "b.png"), nrow=2, min_size=64)))
    np.testing.assert_array_equal(again, png)


def test_one_channel_grids_are_gray_pngs(tmp_path):
    grid = make_grid(torch.zeros(2, 1, 4, 4), nrow=2)
    png = Image.open(write_grid(grid, str(tmp_path / "g.png"), min_size=8))
    assert png.mode == "L" and png.size == (grid.shape[1] * 1, grid.shape[0] * 1)
