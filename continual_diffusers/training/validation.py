"""End-of-task validation samples: one grid row per seen class (class models), per prompt (text models), per
reference image of the seen tasks (slot models: the image, then samples from its slots), or one row of
unconditional samples, written as PNG next to the exported model so forgetting is visible at a glance."""

from __future__ import annotations

import os

import numpy as np
import torch

from ..models.spec import ModelSpec
from ..sampling.generate import SamplerOptions, generate_samples, resolve_guidance
from ..utils.images import grid_row_labels, make_grid, write_grid
from .train_config import TrainConfig


def validation_options(cfg: TrainConfig) -> SamplerOptions:
    """Sampler settings for end-of-task samples and metrics; guidance only for models trained with CFG
    (`resolve_guidance`: a guidance_scale ≠ 1 without condition dropout is refused)."""
    sampling = cfg.validation
    guidance = resolve_guidance(sampling.guidance_scale, cfg.uncond_p > 0, "--guidance_scale")
    return SamplerOptions(
        sampling.scheduler, sampling.num_inference_steps, guidance, seed=cfg.seed, eta=sampling.ddim_eta
    )


class ValidationSampler:
    def __init__(self, cfg: TrainConfig, conditioning, train_scheduler, decode_fn=None):
        self.cfg = cfg
        self.decode_fn = decode_fn  # latent models: latents → images in [-1, 1]
        self.conditioning = conditioning
        self.train_scheduler = train_scheduler
        self.last_grid: np.ndarray | None = None
        self.options = validation_options(cfg)

    def labels_for(self, spec: ModelSpec, seen_tasks: list[int]) -> list:
        """Row labels: the kind's default rows after `seen_tasks` (`Conditioning.rows`: every class of every seen
        task, every validation prompt, or [None] for unconditional models)."""
        return self.conditioning.rows(spec.replace(seen_tasks=tuple(seen_tasks)), None, "TrainConfig")

    def save(self, model, task_dir: str, spec: ModelSpec, seen_tasks: list[int], device, references=None) -> str:
        """Sample the grid and write `task_dir/samples.png`. `references` (N, C, H, W): images to reconstruct (slot
        models), one row each (the image, then `validation.num_samples` samples from its condition: `image_rows`)."""
        per_row = self.cfg.validation.num_samples
        if references is not None:  # the model being saved (EMA weights), not the live training one
            rows = self.conditioning.image_rows(model, references)
        else:
            rows = self.labels_for(spec, seen_tasks)
        labels = [label for label in rows for _ in range(per_row)]
        desc = f"samples {os.path.basename(os.path.normpath(task_dir))}"  # a bar once it runs a few seconds
        images = generate_samples(
            model, self.conditioning, self.train_scheduler, labels, self.options, device, self.decode_fn, desc
        )
        if references is not None:
            images = torch.cat([torch.cat([ref[None].to(images), images[i * per_row : (i + 1) * per_row]])
                                for i, ref in enumerate(references)])  # fmt: skip
            per_row += 1
        self.last_grid = make_grid(images, nrow=per_row)  # tiled once: the PNG and the TensorBoard image
        names = None if references is not None else grid_row_labels(rows, spec)
        return write_grid(self.last_grid, os.path.join(task_dir, "samples.png"), row_labels=names)
