"""Writing generated samples to disk: a grid PNG, one PNG per image and an npz of uint8 arrays (no pickle)."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from ..utils.images import save_grid, to_uint8_nhwc


def write_samples(output_dir: str, images: torch.Tensor, labels: list, per_row: int) -> None:
    """images: (N, C, H, W) in [-1, 1]; labels: N entries (class id, prompt or None)."""
    os.makedirs(os.path.join(output_dir, "samples"), exist_ok=True)
    save_grid(images, os.path.join(output_dir, "samples.png"), nrow=per_row)
    arrays = to_uint8_nhwc(images)
    names = ["uncond" if lab is None else str(lab) for lab in labels]
    for i, (img, name) in enumerate(zip(arrays, names)):
        safe = "".join(ch if ch.isalnum() else "_" for ch in name)[:40]
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(
            os.path.join(output_dir, "samples", f"{i:05d}_{safe}.png")
        )
    np.savez(os.path.join(output_dir, "samples.npz"), images=arrays, labels=np.array(names))
