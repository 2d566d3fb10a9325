"""End-of-task validation samples: one grid row per seen class (class models), per prompt (text models), or one
block of unconditional samples, written as PNG next to the exported model so forgetting is visible at a glance."""

from __future__ import annotations

import os

import numpy as np
import torch

from ..sampling.ancestral import make_sampling_scheduler, sample_ancestral
from ..utils.images import make_grid, save_grid
from ..utils.seed import make_generator
from .config import TrainConfig

MAX_SAMPLING_BATCH = 64


class ValidationSampler:
    def __init__(self, cfg: TrainConfig, conditioning, train_scheduler):
        self.cfg = cfg
        self.conditioning = conditioning
        self.train_scheduler = train_scheduler
        self.last_grid: np.ndarray | None = None

    def labels_for(self, metadata: dict, seen_tasks: list[int]) -> list:
        """Row labels: every class of every seen task, every validation prompt, or [None] (unconditional)."""
        kind = self.conditioning.kind
        if kind == "class":
            per_task = metadata["classes_per_task"]
            return sorted({c for t in seen_tasks for c in per_task[str(t)]})
        if kind == "text":
            return list(self.cfg.validation_prompts)
        return [None]

    @torch.no_grad()
    def sample(self, model, labels: list, device) -> torch.Tensor:
        """eval_batch_size images per label, (len(labels)·n, C, H, W) in [-1, 1]."""
        n = self.cfg.eval_batch_size
        flat = [lab for lab in labels for _ in range(n)]
        unet_cfg = model.unet.config
        shape = (unet_cfg.in_channels, unet_cfg.sample_size, unet_cfg.sample_size)
        generator = make_generator(self.cfg.seed, "validation", device=device)
        guided = self.cfg.uncond_p > 0 and self.conditioning.supports_null
        was_training = model.training
        model.eval()
        chunks = []
        for start in range(0, len(flat), MAX_SAMPLING_BATCH):
            part = flat[start : start + MAX_SAMPLING_BATCH]
            cond = {} if part[0] is None else self.conditioning.encode(
                torch.tensor(part) if self.conditioning.kind == "class" else part, device)
            null = self.conditioning.null(len(part), device) if guided else None
            scheduler = make_sampling_scheduler(self.cfg.validation_scheduler, self.train_scheduler.config)
            chunks.append(sample_ancestral(
                model, scheduler, (len(part), *shape), cond, null, self.cfg.guidance_scale if guided else 1.0,
                self.cfg.num_inference_steps, generator, device,
            ))
        model.train(was_training)
        return torch.cat(chunks)

    def save(self, model, task_dir: str, metadata: dict, seen_tasks: list[int], device) -> str:
        labels = self.labels_for(metadata, seen_tasks)
        images = self.sample(model, labels, device)
        self.last_grid = make_grid(images, nrow=self.cfg.eval_batch_size)
        return save_grid(images, os.path.join(task_dir, "samples.png"), nrow=self.cfg.eval_batch_size)
