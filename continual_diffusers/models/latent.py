"""Latent diffusion (Rombach et al. 2022): load the frozen Stable-Diffusion components, move images to and from the
VAE latent space, and serve a task's images as latents so the pixel-space trainer, strategies and samplers run
unchanged on z = scaling_factor · (E(x) − shift_factor).

- `load_sd_components`: VAE, tokenizer, text encoder, scheduler and UNet from a hub id or a local folder in the
  diffusers Stable-Diffusion layout (vae/, text_encoder/, tokenizer/, scheduler/, unet/), validated together.
- `LatentCodec`: the VAE posterior N(μ(x), σ(x)²), `encode` (a seeded posterior sample, as diffusers'
  train_text_to_image) and `decode` back to [-1, 1] images.
- `LatentTaskDataset`: wraps a `TaskDataset`; `.batch` returns latents. With `cache=True` the VAE runs once per
  image (twice with random flips: both orientations): the posterior's μ and σ are stored and every batch draws a
  fresh seeded sample μ + σ·ε, so caching changes the cost, not the distribution of training latents.
- `LatentTransform`: pixel transform followed by encoding, for strategies that store raw images (replay).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from ..utils.errors import UserInputError
from ..utils.jsonfile import read_json_object
from ..utils.logging import get_logger, quiet_libraries
from ..utils.progress import progress_bar
from .components import check_local_config, load_model, remote_config
from .conditioning import load_text_encoder
from .config_check import UNET_SIZES, VAE_SIZES, check_model_config

logger = get_logger(__name__)
SD_SUBFOLDERS = ("vae", "text_encoder", "tokenizer", "scheduler", "unet")
_ENCODE_CHUNK = 64  # images per VAE call when filling the cache


@dataclass
class LatentComponents:
    """The pieces of a Stable-Diffusion checkpoint we use; VAE and text encoder frozen, in eval mode."""

    vae: nn.Module
    tokenizer: object
    text_encoder: nn.Module
    scheduler: object  # DDPMScheduler with the repo's noise schedule and the chosen prediction type
    unet: nn.Module  # UNet2DConditionModel: pretrained weights, or randomly initialised with unet_scratch


def _check_layout(path: str, need_unet: bool) -> None:
    if not os.path.isdir(path):
        return  # a hub id: from_pretrained resolves (or fails with a message we rephrase)
    wanted = [s for s in SD_SUBFOLDERS if s != "unet" or need_unet]
    missing = [s for s in wanted if not os.path.isdir(os.path.join(path, s))]
    if missing:
        raise UserInputError(
            f"--pretrained_model_name_or_path {path}: missing subfolder(s) {', '.join(s + '/' for s in missing)} "
            f"(expected the diffusers Stable-Diffusion layout: {', '.join(s + '/' for s in SD_SUBFOLDERS)})"
        )


def _unet_config(path: str, config_path: str | None, revision: str | None) -> dict:
    """The config of a UNet trained from scratch: the repo's unet/config.json, or `config_path` (a file or a folder
    with config.json); checked on an empty skeleton before it is built."""
    from diffusers import UNet2DConditionModel

    if config_path is None:
        if os.path.isdir(path):
            config, where = check_local_config(os.path.join(path, "unet")), os.path.join(path, "unet", "config.json")
        else:
            config, where = remote_config(UNet2DConditionModel, path, "unet", revision, "the UNet"), f"{path}/unet"
    else:
        where = os.path.join(config_path, "config.json") if os.path.isdir(config_path) else config_path
        try:
            config = read_json_object(where)
        except UserInputError as err:
            raise UserInputError(f"--model_config_name_or_path {err}") from None
        where = f"--model_config_name_or_path {where}"
    check_model_config(UNet2DConditionModel, config, where, UNET_SIZES)
    return config


def _scheduler_config(path: str, revision: str | None, overrides: dict) -> dict:
    """The repo's scheduler config with `overrides` applied, checked (sampling/schedule_check.py)."""
    from diffusers import DDPMScheduler

    from ..sampling.schedule_check import check_schedule_config

    if os.path.isdir(path):
        config = check_local_config(os.path.join(path, "scheduler"), "scheduler_config.json")
    else:
        config = remote_config(DDPMScheduler, path, "scheduler", revision, "the scheduler")
    where = os.path.join(path, "scheduler", "scheduler_config.json")
    check_schedule_config({k: v for k, v in config.items() if k not in overrides}, where)
    config = {**config, **overrides}
    check_schedule_config(config, f"{where} with {', '.join(f'{k}={v}' for k, v in overrides.items())}")
    return config


def load_sd_components(
    path: str,
    revision: str | None = None,
    variant: str | None = None,
    prediction_type: str | None = None,
    unet_scratch: bool = False,
    unet_config_path: str | None = None,
    rescale_betas_zero_snr: bool = False,
) -> LatentComponents:
    """Load and cross-check the SD components of `path` (hub id or local dir), each checked as untrusted input
    (models/components.py: bounded configs on empty skeletons, safetensors weights that fit them; the scheduler
    config against what every sampler accepts).

    Args:
        prediction_type: "epsilon" | "v_prediction" overrides the scheduler config's; None keeps it.
        unet_scratch: random-init UNet from the repo's unet config, or from `unet_config_path` (e.g. a smaller one).
        rescale_betas_zero_snr: rescale the repo's betas to ᾱ_T = 0 (Lin et al. 2024); needs v-prediction.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    if unet_config_path and not unet_scratch:
        raise UserInputError("--model_config_name_or_path needs --unet_scratch (it defines a new, random UNet)")
    _check_layout(path, need_unet=not (unet_scratch and unet_config_path))
    overrides = {"prediction_type": prediction_type} if prediction_type else {}
    if rescale_betas_zero_snr:  # Lin et al. 2024: ᾱ_T = 0 (fine-tuning SD 2.x with v-prediction)
        overrides["rescale_betas_zero_snr"] = True
    with quiet_libraries():
        scheduler = DDPMScheduler.from_config(_scheduler_config(path, revision, overrides))
    tokenizer, text_encoder = load_text_encoder(path, revision, variant)
    vae = load_model(AutoencoderKL, path, "vae", "the VAE", VAE_SIZES, variant, revision)
    if unet_scratch:
        config = _unet_config(path, unet_config_path, revision)
        with quiet_libraries():
            unet = UNet2DConditionModel.from_config(config)
    else:
        unet = load_model(UNet2DConditionModel, path, "unet", "the UNet", UNET_SIZES, variant, revision)
    vae.requires_grad_(False).eval()
    text_encoder.requires_grad_(False).eval()
    components = LatentComponents(vae, tokenizer, text_encoder, scheduler, unet)
    check_components(components)
    return components


def check_components(c: LatentComponents) -> None:
    """One clear message per incompatibility between the text encoder, VAE and UNet (the tokenizer's with the text
    encoder: `conditioning.load_text_encoder`)."""
    te = c.text_encoder.config
    if c.unet.config.cross_attention_dim != te.hidden_size:
        raise UserInputError(
            f"UNet cross_attention_dim={c.unet.config.cross_attention_dim} but the text encoder's hidden size is "
            f"{te.hidden_size}"
        )
    if c.unet.config.in_channels != c.vae.config.latent_channels:
        raise UserInputError(
            f"UNet in_channels={c.unet.config.in_channels} but the VAE has {c.vae.config.latent_channels} latent "
            "channels"
        )


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
