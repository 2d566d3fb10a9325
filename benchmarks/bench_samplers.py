"""Few-step samplers vs DDPM-1000 on trained task models: oracle accuracy of the samples' labels and feature FID
against the real test images of the classes sampled, over several sampling seeds, plus network evaluations and
wall time. Per-class grids of the first seed are written for every sampler.

    python benchmarks/bench_samplers.py outputs/demo/task_1 --oracle outputs/demo/oracle
    python benchmarks/bench_samplers.py run_a/task_1 run_b/task_1 --oracle oracle --seeds 0 1 2 \
        --configs ddpm:1000 ddpm:25 ddim:25 ddim:25:0.5 dpm++:25 unipc:25 --output_dir bench

A config is <scheduler>:<steps>[:<η>] (η: DDIM's eta, `SamplerOptions.eta`).

With several model dirs (e.g. one trained per seed) each sampler's numbers are the mean ± 95 % CI over models × seeds.
Default test images: the held-out split of the bundled digits (`--test_data_path` for other data). Do not run the
1000-step baseline on shared CPUs with large settings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from bench_sampler_fidelity import reference_features
from strategy_table import ci

from continual_diffusers.data import load_split_digits, load_tasks
from continual_diffusers.evaluation.classifier import load_oracle, predict
from continual_diffusers.evaluation.metrics import frechet_distance
from continual_diffusers.pipelines.loading import load_task_model
from continual_diffusers.sampling.ancestral import SCHEDULERS
from continual_diffusers.sampling.generate import SamplerOptions, generate_samples
from continual_diffusers.utils.images import save_grid

CONFIGS = [
    "ddpm:1000", "ddpm:25", "ddpm:10", "ddim:25", "ddim:10", "ddim:25:0.5", "ddim:25:1", "dpm++:25", "dpm++:10",
    "dpm++_karras:25", "dpm++_sde:25", "unipc:25", "unipc:10", "euler:25", "euler_a:25",
]  # fmt: skip


def parse_config(text: str) -> tuple[str, int, float]:
    """<scheduler>:<steps>[:<η>] → (scheduler, steps, η)."""
    name, steps, *eta = text.split(":")
    try:
        config = (name, int(steps), float(eta[0]) if eta else 0.0)
    except ValueError:
        config = None
    if config is None or name not in SCHEDULERS or config[1] < 1 or len(eta) > 1 or not 0 <= config[2] <= 1:
        raise argparse.ArgumentTypeError(
            f"expected <scheduler>:<steps>[:<η in [0, 1]>] with a scheduler of {sorted(SCHEDULERS)}, got {text!r}"
        )
    return config


def config_name(name: str, steps: int, eta: float) -> str:
    return f"{name}:{steps}" + (f":{eta:g}" if eta else "")


def bench_model(model_dir: str, configs, seeds, args, oracle, test_tasks) -> dict[str, list[dict]]:
    model, conditioning, scheduler, spec = load_task_model(model_dir)
    if spec.conditioning != "class":
        raise SystemExit(f"{model_dir}: the sampler benchmark needs a class-conditional model")
    classes = spec.seen_classes()
    labels = [c for c in classes for _ in range(args.num_samples)]
    real = reference_features(oracle, [test_tasks], classes, spec.resolution)
    guidance = args.guidance_scale if spec.classifier_free_guidance else 1.0
    calls = {"n": 0}
    model.unet.register_forward_pre_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    rows: dict[str, list[dict]] = {}
    for name, steps, eta in configs:
        for seed in seeds:
            calls["n"] = 0
            start = time.perf_counter()
            options = SamplerOptions(name, steps, guidance, batch_size=len(labels), seed=seed, eta=eta)
            images = generate_samples(model, conditioning, scheduler, labels, options, "cpu")
            seconds = time.perf_counter() - start
            predicted, features = predict(oracle, images.float())
            row = {
                "accuracy": float((predicted == torch.tensor(labels)).float().mean()),
                "frechet": frechet_distance(features, real),
                "unet_calls": calls["n"],
                "seconds": seconds,
            }
            key = config_name(name, steps, eta)
            rows.setdefault(key, []).append(row)
            print(json.dumps({"model": model_dir, "sampler": key, "seed": seed, **row}), flush=True)
            if seed == seeds[0]:
                tag = os.path.basename(os.path.normpath(model_dir))
                grid = f"{tag}_{key.replace(':', '_')}.png"
                save_grid(images, os.path.join(args.output_dir, grid), nrow=args.num_samples)
    return rows


def table(results: dict[str, list[dict]]) -> str:
    lines = [
        "| sampler | UNet calls | oracle accuracy ↑ | feature FID ↓ | seconds / batch |",
        "|---|---|---|---|---|",
    ]
    for sampler, rows in results.items():
        lines.append(
            f"| {sampler} | {rows[0]['unet_calls']} | {ci([r['accuracy'] for r in rows])} | "
            f"{ci([r['frechet'] for r in rows], 1)} | {statistics.median(r['seconds'] for r in rows):.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    p.add_argument("model_dirs", nargs="+", help="exported task folders (output_dir/task_<k>) of class models")
    p.add_argument("--oracle", required=True, help="oracle folder (python -m continual_diffusers.evaluation)")
    p.add_argument("--test_data_path", default=None, help="real test images (default: the bundled digits' split)")
    p.add_argument("--configs", nargs="+", type=parse_config, default=[parse_config(c) for c in CONFIGS])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sampling seeds")
    p.add_argument("--num_samples", type=int, default=50, help="images per class")
    p.add_argument("--guidance_scale", type=float, default=2.0)
    p.add_argument("--output_dir", default="bench_samplers")
    args = p.parse_args()
    os.makedirs(args.output_dir, exist_ok=True)
    oracle, _ = load_oracle(args.oracle)
    test_tasks = load_tasks(args.test_data_path) if args.test_data_path else load_split_digits()[1]
    results: dict[str, list[dict]] = {}
    for model_dir in args.model_dirs:
        for sampler, rows in bench_model(model_dir, args.configs, args.seeds, args, oracle, test_tasks).items():
            results.setdefault(sampler, []).extend(rows)
    with open(os.path.join(args.output_dir, "results.json"), "w") as fh:
        json.dump({"args": {k: v for k, v in vars(args).items() if k != "configs"}, "results": results}, fh, indent=2)
    print(table(results))


if __name__ == "__main__":
    main()
