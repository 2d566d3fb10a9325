"""Batched image transforms in pure torch: uint8 (N, C, H, W) ↔ float in [-1, 1], resize, crops and flips.

Same pipeline as the earlier implementation's torchvision transforms (Resize of the shorter side, bilinear →
CenterCrop or RandomCrop → optional RandomHorizontalFlip → ToTensor + Normalize(0.5, 0.5)), split in two:
`ImageTransform.prepare` resizes a whole task once, and `ImageTransform.__call__` crops and flips a batch. All
randomness is drawn from an explicit `torch.Generator`, so augmentation is reproducible and resumable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

_RESIZE_CHUNK = 512  # images resized per interpolate call: bounds the float32 working memory


def _check_uint8_nchw(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected a uint8 (N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}")


def resize_shorter_side(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the shorter side is `size`, keeping the aspect ratio (torchvision's `Resize(size)` rule).

    Args:
        images: uint8 (N, C, H, W).
        size: target length of the shorter side.

    Returns:
        uint8 (N, C, H', W') with min(H', W') = size, bilinear with antialiasing; `images` itself if already so.
    """
    _check_uint8_nchw(images)
    height, width = images.shape[-2:]
    short, long = min(height, width), max(height, width)
    if short == size:
        return images
    new_long = int(size * long / short)  # truncation, as torchvision does
    new_size = (size, new_long) if height <= width else (new_long, size)
    chunks = [
        F.interpolate(chunk.float(), size=new_size, mode="bilinear", antialias=True, align_corners=False)
        for chunk in images.split(_RESIZE_CHUNK)
    ]
    return torch.cat(chunks).round_().clamp_(0, 255).to(torch.uint8)


def _check_crop(images: torch.Tensor, size: int) -> tuple[int, int]:
    height, width = images.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} from images of size {height}x{width}")
    return height, width


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Crop the central `size`×`size` window (offsets rounded as torchvision's `CenterCrop`).

    Args:
        images: (N, C, H, W), H and W >= size. Returns (N, C, size, size).
    """
    height, width = _check_crop(images, size)
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return images[..., top : top + size, left : left + size]


def random_crop(images: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Crop a `size`×`size` window at an independent uniform offset per sample (torchvision's `RandomCrop`).

    Args:
        images: (N, C, H, W), H and W >= size.
        size: side of the square crop.
        generator: source of the offsets (None: torch's global RNG).

    Returns:
        (N, C, size, size).
    """
    height, width = _check_crop(images, size)
    num = images.shape[0]
    top = torch.randint(0, height - size + 1, (num,), generator=generator)
    left = torch.randint(0, width - size + 1, (num,), generator=generator)
    window = torch.arange(size)
    rows = (top[:, None] + window)[:, None, :, None]  # (N, 1, size, 1)
    cols = (left[:, None] + window)[:, None, None, :]  # (N, 1, 1, size)
    batch = torch.arange(num)[:, None, None, None]
    channels = torch.arange(images.shape[1])[None, :, None, None]
    return images[batch, channels, rows, cols]


def random_flip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each sample horizontally with probability 0.5, independently (torchvision's `RandomHorizontalFlip`).

    Args:
        images: (N, C, H, W). Returns the same shape; `images` is not modified.
    """
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float32 [-1, 1] (ToTensor then Normalize(0.5, 0.5)). Any shape."""
    return images.float() / 127.5 - 1.0


def from_unit_range(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] → uint8 [0, 255]: (x + 1)·127.5, rounded, values outside [-1, 1] clamped. Any shape."""
    return ((x.detach().float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class ImageTransform:
    """Training-time image pipeline: resize the shorter side → center or random crop → optional flip → [-1, 1].

    Attributes:
        resolution: side of the square images fed to the model.
        center_crop: center crop if True, random crop otherwise (only differs for non-square images).
        random_flip: flip each sample horizontally with probability 0.5.
    """

    resolution: int
    center_crop: bool = True
    random_flip: bool = False

    def __post_init__(self) -> None:
        if self.resolution < 1:
            raise ValueError(f"resolution must be >= 1, got {self.resolution}")

    def prepare(self, images_nhwc: np.ndarray) -> torch.Tensor:
        """Convert a task's images once: uint8 (N, H, W, C) numpy → uint8 (N, C, H', W') tensor, min(H', W') = res."""
        images = torch.from_numpy(np.ascontiguousarray(images_nhwc)).permute(0, 3, 1, 2)
        return resize_shorter_side(images.contiguous(), self.resolution)

    def __call__(self, batch_uint8_nchw: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Crop (and flip) a prepared batch and scale it to [-1, 1].

        Args:
            batch_uint8_nchw: uint8 (B, C, H, W) from `prepare`, min(H, W) == resolution.
            generator: source of the random crop offsets and flips (None: torch's global RNG).

        Returns:
            float32 (B, C, resolution, resolution) in [-1, 1].
        """
        _check_uint8_nchw(batch_uint8_nchw)
        if min(batch_uint8_nchw.shape[-2:]) != self.resolution:
            raise ValueError(f"expected images prepared to resolution {self.resolution}, got {batch_uint8_nchw.shape}")
        if self.center_crop:
            images = center_crop(batch_uint8_nchw, self.resolution)
        else:
            images = random_crop(batch_uint8_nchw, self.resolution, generator)
        if self.random_flip:
            images = random_flip(images, generator)
        return to_unit_range(images)
