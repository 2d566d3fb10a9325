"""EWC Fisher estimate: vectorised per-sample gradients (`torch.func.vmap(grad(...))`) vs a loop over single samples,
on the same class-conditional UNet, data and draws. Checks that both give the same Fisher and prints medians over
interleaved repeats (machines are shared and noisy; compare ratios, not seconds).

    python benchmarks/bench_fisher.py                          # 8×8×3, (32, 64, 64) UNet (the CPU demo size), CPU
    python benchmarks/bench_fisher.py --widths 8 16 --num_samples 64 --energy

Target: vectorised ≥ 5× faster than the single-sample loop. Measured on 1 CPU thread
(OMP_NUM_THREADS=1, shared 2-core machine): the tiny test UNet (8, 16) with N=64, K=1, batch 32: 6.6× (score),
7.8× (energy); the (32, 64, 64) demo UNet (1.1 M params): 2.9× (K=2, batch 16), 3.2× (K=1, batch 32), 3.5× (energy).
On CPU the vectorised path is bound by grouped-convolution backward for the per-sample weight gradients, so the gain
shrinks as the model grows; the loop's per-call overhead, which vmap removes, is what dominates on small models.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from diffusers import DDPMScheduler

from continual_diffusers.data import ImageTransform, Task, TaskDataset
from continual_diffusers.models.conditioning import ClassConditioning
from continual_diffusers.models.denoiser import make_denoiser
from continual_diffusers.models.unet import UNetSpec, build_unet
from continual_diffusers.objectives import DenoisingObjective
from continual_diffusers.strategies import estimate_fisher
from continual_diffusers.utils.seed import make_generator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=8)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--widths", type=int, nargs="+", default=[32, 64, 64])
    p.add_argument("--num_samples", type=int, default=32, help="Fisher samples N")
    p.add_argument("--num_timesteps", type=int, default=2, help="draws per sample K")
    p.add_argument("--batch_size", type=int, default=16, help="samples per vmap call")
    p.add_argument("--energy", action="store_true", help="energy model (DAE form): double backward")
    p.add_argument("--repeats", type=int, default=3)
    return p.parse_args(argv)


def setup(args):
    torch.manual_seed(0)
    spec = UNetSpec(args.resolution, args.channels, "class", num_classes=10, block_out_channels=tuple(args.widths))
    model = make_denoiser(build_unet(spec), "dae" if args.energy else None)
    rng = np.random.default_rng(0)
    images = rng.integers(
        0, 256, (max(args.num_samples, 8), args.resolution, args.resolution, args.channels), dtype=np.uint8
    )
    dataset = TaskDataset(
        Task(1, images, rng.integers(0, 10, len(images)).astype(np.int64)), ImageTransform(args.resolution)
    )
    conditioning = ClassConditioning(10, null_class=False)
    objective = DenoisingObjective(DDPMScheduler(num_train_timesteps=1000), "epsilon")
    return model, dataset, objective, lambda batch, device: conditioning.encode(batch["labels"], device)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model, dataset, objective, encode = setup(args)
    options = dict(num_samples=args.num_samples, num_timesteps=args.num_timesteps, batch_size=args.batch_size)

    def fisher(vectorize: bool):
        return estimate_fisher(
            model,
            dataset,
            objective,
            encode,
            torch.device("cpu"),
            make_generator(0, "bench"),
            vectorize=vectorize,
            **options,
        )

    # 1. Same numbers: the vectorised estimate equals the loop (same draws, same maths, different autodiff).
    fast, slow = fisher(True), fisher(False)
    # Relative to the largest Fisher entry: parameters whose gradient is exactly 0 in exact arithmetic (a bias
    # followed by a one-channel GroupNorm, an attention key bias) only carry rounding noise of order 1e-17.
    scale = max(f.abs().max().item() for f in slow.values())
    worst = max((fast[n] - slow[n]).abs().max().item() for n in fast) / scale
    # 2. Interleaved timing (the warm-up above already compiled nothing and filled the allocator).
    times = {True: [], False: []}
    for _ in range(args.repeats):
        for vectorize in (True, False):
            start = time.perf_counter()
            fisher(vectorize)
            times[vectorize].append(time.perf_counter() - start)
    vmap_s, loop_s = statistics.median(times[True]), statistics.median(times[False])
    num_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {'energy (dae)' if args.energy else 'score'} UNet {args.widths} at {args.resolution}², "
        f"{num_params / 1e6:.2f} M params; N={args.num_samples} samples × K={args.num_timesteps} draws; "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"max relative difference vmap vs loop: {worst:.2e}")
    print(f"vmap (batch {args.batch_size}): {vmap_s:.3f} s   loop: {loop_s:.3f} s   speed-up: {loop_s / vmap_s:.1f}×")


if __name__ == "__main__":
    main()
