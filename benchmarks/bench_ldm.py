#!/usr/bin/env python
"""LDM costs on CPU: training step time with and without --cache_latents on the same small SD-layout model, and
LoRA's trainable-parameter fraction and file size against full fine-tuning.

    OMP_NUM_THREADS=2 python benchmarks/bench_ldm.py --resolution 32 --batch_size 32 --steps 10

The model is written by tests/tiny_sd.py (VAE (32, 64): 32×32 images → 16×16×4 latents; UNet (32, 64); tiny CLIP).
A step = batch (VAE encode, or a cached posterior sample) → noise → UNet forward → loss → backward → AdamW.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from tiny_sd import write_tiny_sd  # noqa: E402

from continual_diffusers.data import ImageTransform, Task, TaskDataset  # noqa: E402
from continual_diffusers.models.conditioning import TextConditioning  # noqa: E402
from continual_diffusers.models.denoiser import ScoreModel  # noqa: E402
from continual_diffusers.models.latent import LatentCodec, LatentTaskDataset  # noqa: E402
from continual_diffusers.models.lora import save_lora_adapters  # noqa: E402
from continual_diffusers.objectives import DenoisingObjective  # noqa: E402
from continual_diffusers.pipelines.sd_components import load_sd_components  # noqa: E402
from continual_diffusers.strategies.lora import LoRAAdapters  # noqa: E402


def time_steps(components, dataset, num_steps: int, batch_size: int) -> float:
    """Median seconds per optimizer step (the first step, which fills the cache, is reported separately)."""
    model = ScoreModel(components.unet).train()
    conditioning = TextConditioning(components.tokenizer, components.text_encoder)
    objective = DenoisingObjective(components.scheduler, "epsilon")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for step in range(num_steps + 1):
        start = time.perf_counter()
        gen = torch.Generator().manual_seed(step)
        batch = dataset.batch(torch.randint(0, len(dataset), (batch_size,), generator=gen), gen)
        out = objective(model, batch["images"], conditioning.encode(batch["labels"], "cpu"), generator=gen)
        out.loss.mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times[0], float(np.median(times[1:]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--num_images", type=int, default=256)
    p.add_argument("--lora_rank", type=int, default=4)
    args = p.parse_args()
    tmp = tempfile.mkdtemp()
    sd = write_tiny_sd(os.path.join(tmp, "sd"), vae_channels=(32, 64), unet_channels=(32, 64),
                       latent_size=args.resolution // 2, text_hidden_size=32)  # fmt: skip
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.num_images, args.resolution, args.resolution, 3), dtype=np.uint8)
    task = Task(1, images, np.array([f"digit {i % 10}" for i in range(args.num_images)]))
    base = TaskDataset(task, ImageTransform(args.resolution, center_crop=True, random_flip=True))
    results = {}
    for cache in (False, True):
        torch.manual_seed(0)
        c = load_sd_components(sd)
        first, median = time_steps(c, LatentTaskDataset(base, LatentCodec(c.vae), cache), args.steps, args.batch_size)
        results["cached" if cache else "per_step_encoding"] = {"first_step_s": first, "step_s": median}
    results["cache_speedup"] = results["per_step_encoding"]["step_s"] / results["cached"]["step_s"]
    results["lora"] = lora_costs(sd, args.lora_rank, tmp)
    print(json.dumps(results, indent=2))


def lora_costs(sd: str, rank: int, tmp: str) -> dict:
    """Trainable fraction and file size of one task's LoRA adapter versus the full UNet."""
    c = load_sd_components(sd)
    total = sum(p.numel() for p in c.unet.parameters())
    full_file = os.path.join(sd, "unet", "diffusion_pytorch_model.safetensors")
    LoRAAdapters(c.unet, [1], rank=rank)
    trainable = sum(p.numel() for p in c.unet.parameters() if p.requires_grad)
    sizes = save_lora_adapters(c.unet, ["task_1"], os.path.join(tmp, "lora"))
    return {"rank": rank, "unet_params": total, "lora_trainable_params": trainable,
            "trainable_fraction": trainable / total, "unet_file_bytes": os.path.getsize(full_file),
            "lora_file_bytes": sizes["task_1"]}  # fmt: skip


if __name__ == "__main__":
    main()
