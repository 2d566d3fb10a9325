"""Writing generated samples to disk: a grid PNG, one PNG per image and an npz of uint8 arrays (no pickle)."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from ..utils.images import grid_row_labels, make_grid, to_uint8_nhwc, write_grid


def write_samples(output_dir: str, images: torch.Tensor, labels: list, per_row: int, spec=None) -> None:
    """images: (N, C, H, W) in [-1, 1]; labels: N entries (class id, prompt or None), in rows of `per_row`;
    `spec`: the model's `ModelSpec`, whose tasks and class names are shown beside the grid's rows with the class
    ids (as on the end-of-task grids)."""
    os.makedirs(os.path.join(output_dir, "samples"), exist_ok=True)
    rows = [labels[i : i + per_row] for i in range(0, len(labels), per_row)]
    nameable = all(label is None or isinstance(label, int | str) for label in labels)  # not slot sets
    uniform = nameable and all(len(set(row)) == 1 for row in rows)  # one condition per row: named beside it
    row_labels = grid_row_labels([row[0] for row in rows], spec) if uniform else None
    write_grid(make_grid(images, nrow=per_row), os.path.join(output_dir, "samples.png"), row_labels=row_labels)
    arrays = to_uint8_nhwc(images)
    names = ["uncond" if lab is None else str(lab) for lab in labels]
    for i, (img, name) in enumerate(zip(arrays, names)):
        safe = "".join(ch if ch.isalnum() else "_" for ch in name)[:40]
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(
            os.path.join(output_dir, "samples", f"{i:05d}_{safe}.png")
        )
    np.savez(os.path.join(output_dir, "samples.npz"), images=arrays, labels=np.array(names))
