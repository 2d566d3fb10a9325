"""Batched generation for a list of labels (class ids, prompts or None), shared by end-of-task validation and
evaluate.py."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..utils.seed import make_generator
from .ancestral import SchedulerName, make_sampling_scheduler, sample_ancestral


@dataclass(frozen=True)
class SamplerOptions:
    scheduler: SchedulerName = "ddim"
    num_inference_steps: int = 50
    guidance_scale: float = 1.0  # used only when the model was trained with CFG (it has a null condition)
    batch_size: int = 64
    seed: int = 0


@torch.no_grad()
def generate_samples(model, conditioning, train_scheduler, labels: list, options: SamplerOptions, device):
    """One image per entry of `labels` → (len(labels), C, H, W) in [-1, 1], sampled in chunks of batch_size.

    Entries are class ids (class models), prompt strings (text models) or None (unconditional)."""
    unet_cfg = model.unet.config
    shape = (unet_cfg.in_channels, unet_cfg.sample_size, unet_cfg.sample_size)
    generator = make_generator(options.seed, "sampling", device=device)
    guided = conditioning.supports_null and options.guidance_scale != 1.0
    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, len(labels), options.batch_size):
        part = labels[start : start + options.batch_size]
        if part[0] is None:
            cond = {}
        else:
            cond = conditioning.encode(torch.tensor(part) if conditioning.kind == "class" else part, device)
        null = conditioning.null(len(part), device) if guided else None
        scheduler = make_sampling_scheduler(options.scheduler, train_scheduler.config)
        chunks.append(sample_ancestral(model, scheduler, (len(part), *shape), cond, null,
                                       options.guidance_scale if guided else 1.0, options.num_inference_steps,
                                       generator, device))
    model.train(was_training)
    return torch.cat(chunks)
