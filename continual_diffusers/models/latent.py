"""Latent diffusion (Rombach et al. 2022): move images to and from the VAE latent space, and serve a task's images
as latents so the pixel-space trainer, strategies and samplers run unchanged on z = scaling_factor · (E(x) −
shift_factor). Loading the frozen Stable-Diffusion components is `pipelines.sd_components.load_sd_components`.

- `LatentCodec`: the VAE posterior N(μ(x), σ(x)²), `encode` (a seeded posterior sample, as diffusers'
  train_text_to_image) and `decode` back to [-1, 1] images.
- `LatentTaskDataset`: wraps a `TaskDataset`; `.batch` returns latents. With `cache=True` the VAE runs once per
  image (twice with random flips: both orientations): the posterior's μ and σ are stored and every batch draws a
  fresh seeded sample μ + σ·ε, so caching changes the cost, not the distribution of training latents.
- `LatentTransform`: pixel transform followed by encoding, for strategies that store raw images (replay).
"""

from __future__ import annotations

import torch
from torch import nn

from ..utils.errors import UserInputError
from ..utils.logging import get_logger
from ..utils.progress import progress_bar

logger = get_logger(__name__)
_ENCODE_CHUNK = 64  # images per VAE call when filling the cache


class LatentCodec:
    """Images (B, 3, H, W) in [-1, 1] ↔ latents (B, c, H/f, W/f), f = 2^(levels − 1), scaled to ≈ unit variance."""

    def __init__(self, vae: nn.Module):
        self.vae = vae.requires_grad_(False).eval()
        self.scaling_factor = float(vae.config.scaling_factor)
        self.shift_factor = float(getattr(vae.config, "shift_factor", None) or 0.0)
        self.downsample = 2 ** (len(vae.config.block_out_channels) - 1)

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @torch.no_grad()
    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, σ) of the VAE posterior, each (B, c, h, w), on the VAE's device."""
        dist = self.vae.encode(images.to(self.device, self.vae.dtype)).latent_dist
        return dist.mean.float(), dist.std.float()

    def from_posterior(
        self, mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Scaled latents z = s·(μ + σ·ε − shift), ε ~ N(0, I) drawn from `generator` (on CPU, so it is seedable)."""
        noise = torch.randn(mean.shape, generator=generator).to(mean.device)
        return self.scaling_factor * (mean + std * noise - self.shift_factor)

    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] → scaled latents (B, c, H/f, W/f): one seeded posterior sample each."""
        return self.from_posterior(*self.posterior(images), generator)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, c, h, w) → images (B, 3, h·f, w·f), clamped to [-1, 1]."""
        z = latents.to(self.device, self.vae.dtype) / self.scaling_factor + self.shift_factor
        return self.vae.decode(z).sample.float().clamp(-1, 1)


class LatentTaskDataset:
    """A `TaskDataset` served in latent space: `.batch(indices, generator)` → {"images": latents (B, c, h, w) on
    the VAE's device, "labels": list[str]}. `labels`, `label_kind`, `task_id`, `transform` and the prepared uint8
    images are those of the wrapped dataset (replay stores raw images; `LatentTransform` encodes them)."""

    def __init__(self, base, codec: LatentCodec, cache: bool = False):
        self.base = base
        self.codec = codec
        self.cache = cache
        self.task_id = base.task_id
        self.transform = base.transform
        self.labels = base.labels
        self.label_kind = base.label_kind
        self._images = base.images  # uint8 (N, C, H', W')
        self._cached: tuple[torch.Tensor, torch.Tensor] | None = None  # μ, σ: (V, N, c, h, w), V = 1 or 2 (flips)
        if cache and not self.transform.center_crop and self._images.shape[-1] != self._images.shape[-2]:
            raise UserInputError(
                "--cache_latents stores one latent per image, so random crops of non-square images cannot be cached:"
                " add --center_crop (or drop --cache_latents)"
            )

    @property
    def images(self) -> torch.Tensor:
        """The wrapped dataset's prepared pixel images (replay stores these, not latents)."""
        return self._images

    def __len__(self) -> int:
        return len(self.base)

    def _fill_cache(self) -> tuple[torch.Tensor, torch.Tensor]:
        from ..data.transforms import center_crop, to_unit_range

        # Chunk by chunk: the prepared images may be a lazy task's (`data.lazy.PreparedImages`), read on access.
        num_views = 2 if self.transform.random_flip else 1
        means, stds = [[] for _ in range(num_views)], [[] for _ in range(num_views)]
        starts = range(0, len(self._images), _ENCODE_CHUNK)
        with progress_bar(starts, desc=f"VAE latents (task {self.task_id})", unit="chunk") as bar:
            for start in bar:
                chunk = self._images[start : start + _ENCODE_CHUNK]
                chunk = to_unit_range(center_crop(chunk, self.transform.resolution))
                for v, view in enumerate([chunk, chunk.flip(-1)][:num_views]):
                    mean, std = self.codec.posterior(view)
                    means[v].append(mean)
                    stds[v].append(std)
        logger.info("task %s: cached VAE latents of %d images (%d views)", self.task_id, len(self._images), num_views)
        return torch.stack([torch.cat(m) for m in means]), torch.stack([torch.cat(s) for s in stds])

    def batch(self, indices: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """{"images": scaled latents (B, c, h, w), "labels": list[str] | absent} for long (B,) `indices`."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        if not self.cache:
            batch = self.base.batch(indices, generator)
            return {**batch, "images": self.codec.encode(batch["images"], generator)}
        if self._cached is None:
            self._cached = self._fill_cache()
        mean, std = self._cached
        view = torch.zeros(len(indices), dtype=torch.long)
        if mean.shape[0] == 2:  # the same p = 0.5 flip as the pixel transform, drawn from the same generator
            view = (torch.rand(len(indices), generator=generator) < 0.5).long()
        rows = indices.to(mean.device)
        view = view.to(mean.device)
        batch: dict = {"images": self.codec.from_posterior(mean[view, rows], std[view, rows], generator)}
        if self.labels is not None:
            batch["labels"] = [str(x) for x in self.labels[indices.numpy()]]
        return batch


class LatentTransform:
    """`transform(uint8 images (B, C, H, W), generator) -> scaled latents`: the pixel transform, then the VAE."""

    def __init__(self, transform, codec: LatentCodec):
        self.transform = transform
        self.codec = codec

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.codec.encode(self.transform(images, generator), generator)
