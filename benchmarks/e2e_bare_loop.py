"""The bare diffusers loop of `bench_end_to_end.py`: UNet2DModel + DDPMScheduler + AdamW + clipping in a plain loop,
with nothing of continual_diffusers, doing the job main_ddpm.py does there (what a user would write from diffusers'
training examples): each task's images and a label-balanced buffer's shuffled together in batches, classifier-free
guidance through a null class, the energy as ½‖x − f(x)‖² (dae), and at each task end the pipeline (save_pretrained)
and one PNG of samples (one per seen class, CFG, DDPM steps).

    python benchmarks/e2e_bare_loop.py --data tasks.npz --output_dir out --objective energy --job '{...}'

`--job` is the JSON of `bench_end_to_end.job_sizes`; `--variant` one of its GPU options (bf16 autocast, channels_last,
fused AdamW, torch.compile: score models only, it has no double backward).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

VARIANTS = ("bf16", "channels_last", "fused_adamw", "compile")


def main(argv: list[str] | None = None) -> None:
    """A diffusers training loop with nothing of ours: what a user would write from diffusers' examples."""
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--objective", choices=("score", "energy"), required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--variant", choices=VARIANTS, default=None)
    p.add_argument("--job", required=True)
    args = p.parse_args(argv)
    job = json.loads(args.job)
    if args.variant == "compile" and args.objective == "energy":
        p.error("torch.compile has no double backward: --variant compile is for score models")

    import numpy as np
    import torch
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler

    torch.manual_seed(job["seed"])
    rng = np.random.default_rng(job["seed"])
    device, variant = torch.device(args.device), args.variant
    with np.load(args.data) as npz:
        ids = sorted({int(k.split("/")[0][5:]) for k in npz.files if k.startswith("task_")})
        tasks = [(i, npz[f"task_{i}/images"], npz[f"task_{i}/labels"]) for i in ids]
    num_classes = int(max(labels.max() for _, _, labels in tasks)) + 1
    images0 = tasks[0][1]
    unet = bare_unet(job, images0.shape[1], images0.shape[-1], num_classes).to(device)
    if variant == "channels_last":
        unet = unet.to(memory_format=torch.channels_last)
    forward = torch.compile(unet) if variant == "compile" else unet
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    buffer: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for task_id, images, labels in tasks:
        rows = [images, *(b[0] for b in buffer.values())], [labels, *(b[1] for b in buffer.values())]
        x_all, y_all = np.concatenate(rows[0]), np.concatenate(rows[1])
        per_epoch = math.ceil(len(x_all) / job["batch_size"])
        steps = job["epochs"] * per_epoch
        opt_kwargs = {"fused": True} if variant == "fused_adamw" else {}
        optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6,
                                      **opt_kwargs)  # fmt: skip
        lr_schedule = get_scheduler("cosine", optimizer, num_warmup_steps=0, num_training_steps=steps)
        start, seen = time.perf_counter(), 0
        for step in range(steps):
            if step % per_epoch == 0:  # a new epoch: the task's images and the buffer's, shuffled
                order = rng.permutation(len(x_all))
            pick = order[(step % per_epoch) * job["batch_size"] :][: job["batch_size"]]
            x0 = torch.from_numpy(x_all[pick]).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(device)
            y = torch.from_numpy(y_all[pick]).long().to(device)
            y = torch.where(torch.rand(len(y), device=device) < job["uncond_p"], num_classes, y)  # CFG null class
            noise = torch.randn_like(x0)
            t = torch.randint(0, 1000, (len(x0),), device=device)
            x_t = scheduler.add_noise(x0, noise, t)
            if variant == "channels_last":
                x_t = x_t.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, torch.bfloat16, enabled=variant == "bf16"):
                pred = bare_predict(forward, x_t, t, y, args.objective, create_graph=True)
            loss = torch.nn.functional.mse_loss(pred.float(), noise)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            optimizer.step()
            lr_schedule.step()
            optimizer.zero_grad(set_to_none=True)
            seen += len(x0)
        print(f"task {task_id} trained: {steps} optimizer steps, {seen} rows in {time.perf_counter() - start:.2f} s")
        bare_export(unet, scheduler, job, args.objective, args.output_dir, task_id, tasks, num_classes, device)
        buffer[task_id] = (images, labels)
        keep = job["buffer_size"] // len(buffer)  # task-balanced, label-balanced random subsets
        for i, (bx, by) in buffer.items():
            classes = np.unique(by)
            pick = np.concatenate([rng.permutation(np.flatnonzero(by == c))[: keep // len(classes)] for c in classes])
            buffer[i] = (bx[pick], by[pick])


def bare_unet(job: dict, resolution: int, channels: int, num_classes: int):
    from diffusers import UNet2DModel

    n = len(job["widths"])
    return UNet2DModel(
        sample_size=resolution, in_channels=channels, out_channels=channels, block_out_channels=tuple(job["widths"]),
        layers_per_block=job["layers_per_block"], norm_num_groups=min(32, job["widths"][0]), attention_head_dim=8,
        down_block_types=tuple("AttnDownBlock2D" if i == n - 1 else "DownBlock2D" for i in range(n)),
        up_block_types=tuple("AttnUpBlock2D" if i == 0 else "UpBlock2D" for i in range(n)),
        num_class_embeds=num_classes + 1,
    )  # fmt: skip


def bare_predict(unet, x, t, y, objective: str, create_graph: bool):
    """ε̂: the UNet's output (score), or ∇ₓ½‖x − f(x)‖² (energy, dae) with the math attention kernel (the fused
    kernels have no double backward)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if objective == "score":
        return unet(x, t, class_labels=y).sample
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        x = x.detach().requires_grad_(True)
        energy = 0.5 * (x - unet(x, t, class_labels=y).sample).float().pow(2).flatten(1).sum(1)
        (eps,) = torch.autograd.grad(energy.sum(), x, create_graph=create_graph)
    return eps


def bare_export(unet, scheduler, job, objective, output_dir, task_id, tasks, num_classes, device) -> None:
    """task_<id>/: the pipeline (save_pretrained) and samples.png, one image per seen class (CFG, DDPM steps)."""
    import numpy as np
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler
    from PIL import Image

    task_dir = os.path.join(output_dir, f"task_{task_id}")
    seen = sorted({int(c) for i, _, labels in tasks if i <= task_id for c in np.unique(labels)})
    y = torch.tensor(seen, device=device).repeat_interleave(job["samples_per_class"])
    sampler = DDPMScheduler.from_config(scheduler.config)
    sampler.set_timesteps(job["inference_steps"])
    generator = torch.Generator(device).manual_seed(job["seed"])
    x = torch.randn((len(y), unet.config.in_channels, unet.config.sample_size, unet.config.sample_size),
                    generator=generator, device=device)  # fmt: skip
    unet.eval()
    for t in sampler.timesteps:
        both = torch.cat([x, x])
        labels = torch.cat([y, torch.full_like(y, num_classes)])
        with torch.no_grad() if objective == "score" else torch.enable_grad():
            eps = bare_predict(unet, both, t.expand(len(both)).to(device), labels, objective, create_graph=False)
        cond, uncond = eps.detach().chunk(2)
        x = sampler.step(uncond + job["guidance_scale"] * (cond - uncond), t, x, generator=generator).prev_sample
    unet.train()
    grid = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    os.makedirs(task_dir, exist_ok=True)
    Image.fromarray(np.concatenate(list(grid), axis=1).squeeze(-1) if grid.shape[-1] == 1 else
                    np.concatenate(list(grid), axis=1)).save(os.path.join(task_dir, "samples.png"))  # fmt: skip
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(task_dir)


if __name__ == "__main__":
    main()
