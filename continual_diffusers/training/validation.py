"""End-of-task validation samples: one grid row per seen class (class models), per prompt (text models), or one
row of unconditional samples, written as PNG next to the exported model so forgetting is visible at a glance."""

from __future__ import annotations

import os

import numpy as np

from ..sampling.generate import SamplerOptions, generate_samples
from ..utils.images import make_grid, save_grid
from .config import TrainConfig


def validation_options(cfg: TrainConfig) -> SamplerOptions:
    """Sampler settings for end-of-task samples and metrics; guidance only for models trained with CFG."""
    guidance = cfg.guidance_scale if cfg.uncond_p > 0 else 1.0
    return SamplerOptions(cfg.validation_scheduler, cfg.num_inference_steps, guidance, seed=cfg.seed)


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

    def save(self, model, task_dir: str, metadata: dict, seen_tasks: list[int], device) -> str:
        rows = self.labels_for(metadata, seen_tasks)
        labels = [label for label in rows for _ in range(self.cfg.eval_batch_size)]
        images = generate_samples(
            model, self.conditioning, self.train_scheduler, labels, self.options, device, self.decode_fn
        )
        self.last_grid = make_grid(images, nrow=self.cfg.eval_batch_size)
        return save_grid(images, os.path.join(task_dir, "samples.png"), nrow=self.cfg.eval_batch_size)
