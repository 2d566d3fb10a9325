"""End-of-task validation samples: one grid row per seen class (class models), per prompt (text models), per
reference image of the seen tasks (slot models: the image, then samples from its slots), or one row of
unconditional samples, written as PNG next to the exported model so forgetting is visible at a glance."""

from __future__ import annotations

import os

import numpy as np
import torch

from ..sampling.generate import SamplerOptions, generate_samples
from ..utils.images import make_grid, write_grid
from .config import TrainConfig


def validation_options(cfg: TrainConfig) -> SamplerOptions:
    """Sampler settings for end-of-task samples and metrics; guidance only for models trained with CFG."""
    guidance = cfg.guidance_scale if cfg.uncond_p > 0 else 1.0
    return SamplerOptions(cfg.validation_scheduler, cfg.num_inference_steps, guidance, seed=cfg.seed, eta=cfg.ddim_eta)


class ValidationSampler:
    def __init__(self, cfg: TrainConfig, conditioning, train_scheduler, decode_fn=None):
        self.cfg = cfg
        self.decode_fn = decode_fn  # latent models: latents → images in [-1, 1]
        self.conditioning = conditioning
        self.train_scheduler = train_scheduler
        self.last_grid: np.ndarray | None = None
        self.options = validation_options(cfg)

    def labels_for(self, metadata: dict, seen_tasks: list[int]) -> list:
        """Row labels: every class of every seen task, every validation prompt, or [None] (unconditional)."""
        kind = self.conditioning.kind
        if kind == "class":
            per_task = metadata["classes_per_task"]
            return sorted({c for t in seen_tasks for c in per_task[str(t)]})
        if kind == "text":
            return list(self.cfg.validation_prompts)
        return [None]

    def save(self, model, task_dir: str, metadata: dict, seen_tasks: list[int], device, references=None) -> str:
        """Sample the grid and write `task_dir/samples.png`. `references` (N, C, H, W): a slot model's images to
        reconstruct, one row each (the image, then `eval_batch_size` samples from its slots)."""
        per_row = self.cfg.eval_batch_size
        if references is not None:
            encoder = model.slot_encoder.eval()  # the model being saved (EMA weights), not the live training one
            with torch.no_grad():
                rows = list(encoder(references.to(encoder.device, encoder.dtype)).slots)
        else:
            rows = self.labels_for(metadata, seen_tasks)
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
        return write_grid(self.last_grid, os.path.join(task_dir, "samples.png"))
