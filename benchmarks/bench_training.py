"""Training throughput: our continual trainer vs a bare diffusers loop, and energy vs score, on the same model
and batch. Prints medians over interleaved repeats (machines are shared and noisy; compare ratios, not seconds).

    python benchmarks/bench_training.py                       # 32×32×3, batch 32, (32, 64, 64) UNet, CPU
    python benchmarks/bench_training.py --resolution 8 --channels 1 --batch_size 64
    python benchmarks/bench_training.py --pass_rows 22 27 32 54 --energy   # CPU seconds per row of one pass

Targets: energy/score ≤ 2.5×, ours ≥ 0.97× the bare loop's throughput.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from accelerate import Accelerator
from diffusers import DDPMScheduler

from continual_diffusers.data import ImageTransform, Task, TaskDataset
from continual_diffusers.models.conditioning import ClassConditioning
from continual_diffusers.models.denoiser import make_denoiser
from continual_diffusers.models.spec import ModelSpec
from continual_diffusers.models.unet import UNetSpec, build_unet
from continual_diffusers.objectives import DenoisingObjective
from continual_diffusers.strategies import Naive
from continual_diffusers.training.batches import BatchSchedule
from continual_diffusers.training.optim import build_lr_schedule, build_optimizer
from continual_diffusers.training.train_config import TrainConfig
from continual_diffusers.training.trainer import ContinualTrainer


def fake_task(n: int, res: int, channels: int) -> Task:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, res, res, channels), dtype=np.uint8)
    return Task(1, images, rng.integers(0, 10, n).astype(np.int64))


def make_unet(args):
    torch.manual_seed(0)
    spec = UNetSpec(args.resolution, args.channels, "class", num_classes=10, block_out_channels=tuple(args.widths),
                    layers_per_block=args.layers_per_block)  # fmt: skip
    return build_unet(spec)


def bare_loop(args, dataset: TaskDataset):
    """UNet + DDPMScheduler + AdamW and nothing else (the diffusers train_unconditional inner loop)."""
    unet, scheduler = make_unet(args), DDPMScheduler()
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    step = 0

    def one_step():
        nonlocal step
        batch = dataset.batch(torch.randint(0, len(dataset), (args.batch_size,)))
        x0, y = batch["images"], batch["labels"]
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (x0.shape[0],))
        pred = unet(scheduler.add_noise(x0, noise, t), t, class_labels=y).sample
        torch.nn.functional.mse_loss(pred, noise).backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1

    return one_step


def our_loop(args, dataset: TaskDataset, energy: str | None):
    cfg = TrainConfig(output_dir="/tmp/unused", train_batch_size=args.batch_size, max_train_steps=10**6)
    acc = Accelerator()
    denoiser = make_denoiser(make_unet(args), energy)
    conditioning = ClassConditioning(10, False)
    spec = ModelSpec("class", args.resolution, args.channels, condition=conditioning.params())
    trainer = ContinualTrainer(
        acc,
        denoiser,
        conditioning,
        DenoisingObjective(DDPMScheduler(), "epsilon"),
        Naive(),
        cfg,
        lambda task: dataset,
        spec,
    )
    schedule = BatchSchedule(len(dataset), args.batch_size, 1, 0, 0, 1)
    opt = build_optimizer(denoiser.parameters(), cfg)
    lr = build_lr_schedule(opt, cfg, 10**6)
    model, opt = acc.prepare(denoiser, opt)

    def one_step():
        trainer._optimizer_step(model, opt, lr, dataset, schedule, 1)
        trainer.position.step_in_task += 1

    return one_step


def pass_cost(args) -> None:
    """CPU milliseconds per row of one forward + backward pass of the denoiser at each of `--pass_rows` sizes
    (interleaved repeats): what the trainer's `--rows_per_pass` split of a replay-enlarged batch costs."""
    model = make_denoiser(make_unet(args), "dae" if args.energy else None).train()
    costs: dict[int, list[float]] = {rows: [] for rows in args.pass_rows}
    for _ in range(args.repeats):
        for rows in args.pass_rows:
            x = torch.randn(rows, args.channels, args.resolution, args.resolution)
            t, y = torch.randint(0, 1000, (rows,)), torch.randint(0, 10, (rows,))
            start = time.process_time()
            for _ in range(args.steps):
                model(x, t, class_labels=y).prediction.pow(2).mean().backward()
            costs[rows].append((time.process_time() - start) / (args.steps * rows))
    kind = "energy (dae)" if args.energy else "score"
    for rows, values in costs.items():
        print(f"{kind} pass of {rows:3d} rows: {statistics.median(values) * 1000:7.2f} ms CPU per row")


def median_step(fn, steps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--widths", type=int, nargs="+", default=[32, 64, 64])
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the median over all is reported")
    p.add_argument("--layers_per_block", type=int, default=None, help="default: 1 up to 16 px, else 2")
    p.add_argument("--pass_rows", type=int, nargs="+", default=None, help="time passes of these sizes instead")
    p.add_argument("--energy", action="store_true", help="with --pass_rows: the energy (dae) model")
    args = p.parse_args()
    if args.pass_rows:
        pass_cost(args)
        return
    dataset = TaskDataset(fake_task(512, args.resolution, args.channels), ImageTransform(args.resolution))
    loops = {
        "bare diffusers": bare_loop(args, dataset),
        "ours (score)": our_loop(args, dataset, None),
        "ours (energy dae)": our_loop(args, dataset, "dae"),
    }
    results = {name: [] for name in loops}
    for _ in range(args.repeats):
        for name, fn in loops.items():
            results[name].append(median_step(fn, args.steps))
    med = {name: statistics.median(v) for name, v in results.items()}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, res {args.resolution}, "
        f"batch {args.batch_size}, widths {args.widths}"
    )
    for name, s in med.items():
        print(f"{name:20s} {s * 1000:8.1f} ms/step")
    print(f"ours / bare throughput: {med['bare diffusers'] / med['ours (score)']:.3f}  (target >= 0.97)")
    print(f"energy / score time:    {med['ours (energy dae)'] / med['ours (score)']:.2f}  (target <= 2.5)")


if __name__ == "__main__":
    main()
