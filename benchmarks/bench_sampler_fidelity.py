"""Sampler fidelity: does a sampler draw the distribution its model defines, and what does it do to trained models?

Two studies, both through the library's own entry points (`make_sampling_scheduler` + `sample_ancestral`, and
`generate_samples` for trained models), so they measure what `--scheduler X --num_inference_steps n` runs:

- `analytic`: exact denoisers (`sampling.analytic.GaussianMixtureDenoiser`, the posterior mean E[x₀|x_t] in closed
  form) for Gaussians N(0.2, s²I) with s = 0.2 and 0.5 in 1 and 64 dimensions and a 2-D two-component mixture,
  under the linear β schedule (T = 1000) with ε-, v- and zero-terminal-SNR v-prediction. A sampler run with the
  exact denoiser is run with a perfectly trained model, so every gap to the target is the sampler's. Per cell: the
  std ratio (sample std / true std per dimension, averaged over dimensions), the mean error in units of the true
  std, and the energy distance (Székely & Rizzo 2013) of 2,000 samples to 2,000 exact draws, over the 95th
  percentile of the same distance between two sets of exact draws (> 1: the difference is detectable at 5 %).
- `trained`: exported class-conditional task models (e.g. task 1 of `bench_recipe.py --settings single`): oracle
  accuracy, precision and recall (k-NN manifolds, k = 3) and oracle-feature FID of N samples (balanced over the
  model's classes) against all real images of those classes (training and test split), per sampler and seed.

    python benchmarks/bench_sampler_fidelity.py analytic --output_dir outputs/fidelity
    python benchmarks/bench_sampler_fidelity.py analytic --configs ddpm:25 dpm++_logsnr:25 --targets gauss1d_s0.2
    python benchmarks/bench_sampler_fidelity.py trained run/single/v_pred_new_seed0/task_1 --oracle oracle \\
        --num_samples 1000 --configs ddpm:1000 ddpm:25 dpm++_logsnr:25 --output_dir outputs/fidelity_trained

A config is <scheduler>:<steps>, a scheduler of `sampling.ancestral.SCHEDULERS`. Default configs: every registered
scheduler at 10, 25 and 50 steps, and DDPM-1000.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from diffusers import DDPMScheduler

from continual_diffusers.data import ImageTransform, TaskDataset, load_split_digits, load_tasks
from continual_diffusers.evaluation.classifier import load_oracle, predict
from continual_diffusers.evaluation.memorisation import precision_recall
from continual_diffusers.evaluation.metrics import frechet_distance
from continual_diffusers.pipelines.loading import load_task_model
from continual_diffusers.sampling.analytic import GaussianMixtureDenoiser, gaussian
from continual_diffusers.sampling.ancestral import SCHEDULERS, make_sampling_scheduler, sample_ancestral
from continual_diffusers.sampling.generate import SamplerOptions, generate_samples

STEPS = (10, 25, 50)
DEFAULT_CONFIGS = [f"{name}:{n}" for name in SCHEDULERS for n in STEPS] + ["ddpm:1000"]
# name -> (prediction type, zero terminal SNR)
PARAMETERISATIONS = {"eps": ("epsilon", False), "v": ("v_prediction", False), "v_zsnr": ("v_prediction", True)}
# name -> (number of samples, (C, H, W), builder(alphas_cumprod, prediction_type))
TARGETS = {
    "gauss1d_s0.2": (100_000, (1, 1, 1), lambda a, p: gaussian(a, 0.2, 0.2, 1, p)),
    "gauss1d_s0.5": (100_000, (1, 1, 1), lambda a, p: gaussian(a, 0.2, 0.5, 1, p)),
    "gauss64d_s0.2": (10_000, (1, 8, 8), lambda a, p: gaussian(a, 0.2, 0.2, 64, p)),
    "gauss64d_s0.5": (10_000, (1, 8, 8), lambda a, p: gaussian(a, 0.2, 0.5, 64, p)),
    "gmm2d": (
        50_000,
        (2, 1, 1),
        lambda a, p: GaussianMixtureDenoiser(a, (0.3, 0.7), ((-0.6, 0.0), (0.5, 0.3)), (0.15, 0.3), p),
    ),
}
ENERGY_N, NULL_REPEATS = 2_000, 20


def parse_config(text: str) -> tuple[str, int]:
    name, _, steps = text.partition(":")
    if name not in SCHEDULERS or not steps.isdigit() or int(steps) < 1:
        raise argparse.ArgumentTypeError(f"expected <scheduler>:<steps> with a scheduler of {sorted(SCHEDULERS)}")
    return name, int(steps)


# ------------------------------------------------------------------------------------------------------- analytic
def energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """2E‖a − b‖ − E‖a − a'‖ − E‖b − b'‖ of two samples (N, D), (M, D) (V-statistic)."""
    a, b = a.double(), b.double()
    return float(2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean())


def null_quantile(target: GaussianMixtureDenoiser, seed: int) -> float:
    """95th percentile of the energy distance between two sets of ENERGY_N exact draws."""
    g = torch.Generator().manual_seed(seed)
    values = [energy_distance(target.sample(ENERGY_N, g), target.sample(ENERGY_N, g)) for _ in range(NULL_REPEATS)]
    return sorted(values)[int(0.95 * NULL_REPEATS) - 1]


def fidelity(samples: torch.Tensor, target: GaussianMixtureDenoiser, null_q95: float, seed: int) -> dict:
    """Std ratio and mean error (in true stds), averaged / maximised over dimensions, and energy distance / null."""
    x = samples.reshape(samples.shape[0], -1).double()
    mean, std = target.moments()
    reference = target.sample(ENERGY_N, torch.Generator().manual_seed(seed + 1))
    return {
        "std_ratio": float((x.std(0) / std).mean()),
        "mean_error": float(((x.mean(0) - mean).abs() / std).max()),
        "energy_over_null": energy_distance(x[:ENERGY_N], reference) / null_q95,
        "finite": bool(torch.isfinite(x).all()),
    }


def run_analytic(args) -> dict:
    results: dict = {}
    for param in args.parameterisations:
        prediction_type, zsnr = PARAMETERISATIONS[param]
        train = DDPMScheduler(prediction_type=prediction_type, clip_sample=False, rescale_betas_zero_snr=zsnr)
        for target_name in args.targets:
            n, shape, build = TARGETS[target_name]
            target = build(train.alphas_cumprod, prediction_type)
            null_q95 = null_quantile(target, args.seed)
            for name, steps in args.configs:
                start = time.perf_counter()
                scheduler = make_sampling_scheduler(name, train.config)
                generator = torch.Generator().manual_seed(args.seed)
                try:
                    x = sample_ancestral(target, scheduler, (n, *shape), steps, generator, clamp=False)
                except (IndexError, RuntimeError, ValueError) as exc:  # a sampler that fails is a result too
                    x = torch.full((n, *shape), float("nan"))
                    print(f"{name}:{steps} {param} {target_name} failed: {exc!r}", flush=True)
                row = fidelity(x, target, null_q95, args.seed) | {"seconds": time.perf_counter() - start}
                results.setdefault(f"{name}:{steps}", {}).setdefault(param, {})[target_name] = row
                print(json.dumps({"config": f"{name}:{steps}", "param": param, "target": target_name, **row}))
    return results


def analytic_summary(results: dict) -> str:
    """One row per config: std ratio per target (ε; v and zero-SNR v in brackets where they differ by > 0.005),
    the worst |std ratio − 1| and mean error over every cell, and the cells whose energy distance is detectable."""
    targets = list(next(iter(next(iter(results.values())).values())))
    head = " | ".join(f"std ratio {t}" for t in targets)
    lines = [
        f"| sampler | {head} | worst \\|std ratio − 1\\| | worst mean error (stds) | energy distance > null q95 |",
        "|---" * (len(targets) + 4) + "|",
    ]
    for config, by_param in results.items():
        cells = []
        for t in targets:
            values = [by_param[p][t]["std_ratio"] for p in by_param if t in by_param[p]]
            cell = f"{values[0]:.3f}"
            if max(values) - min(values) > 0.005:
                cell += " (" + ", ".join(f"{v:.3f}" for v in values[1:]) + ")"
            cells.append(cell)
        rows = [r for p in by_param.values() for r in p.values()]
        finite = all(r["finite"] for r in rows)
        worst = max(abs(r["std_ratio"] - 1) for r in rows) if finite else float("inf")
        detectable = sum(r["energy_over_null"] > 1 for r in rows)
        lines.append(
            f"| {config} | {' | '.join(cells)} | {worst:.3f} | {max(r['mean_error'] for r in rows):.3f} | "
            f"{detectable} of {len(rows)} |"
        )
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------------- trained
def reference_features(oracle, task_sets, classes: list[int], resolution: int) -> torch.Tensor:
    """Oracle features (M, D) of every real image (all given task sequences) whose label is in `classes`."""
    feats = []
    for tasks in task_sets:
        for task in tasks:
            batch = TaskDataset(task, ImageTransform(resolution, center_crop=True)).batch(torch.arange(len(task)))
            keep = torch.isin(batch["labels"], torch.tensor(classes))
            if keep.any():
                feats.append(predict(oracle, batch["images"][keep])[1])
    return torch.cat(feats)


def run_trained(args) -> dict:
    oracle, _ = load_oracle(args.oracle)
    if args.data_path:
        task_sets = [load_tasks(args.data_path)] + ([load_tasks(args.test_data_path)] if args.test_data_path else [])
    else:
        task_sets = list(load_split_digits())
    results: dict = {}
    for model_dir in args.model_dirs:
        model, conditioning, scheduler, spec = load_task_model(model_dir)
        if conditioning.oracle_evaluation != "per_class":
            raise SystemExit(f"{model_dir}: the trained study needs a class-conditional model")
        classes = spec.seen_classes()
        labels = [classes[i % len(classes)] for i in range(args.num_samples)]
        real = reference_features(oracle, task_sets, classes, spec.resolution)
        guidance = args.guidance_scale if spec.classifier_free_guidance else 1.0
        zsnr = " zero-SNR" if scheduler.config.get("rescale_betas_zero_snr") else ""
        energy = f"energy ({spec.energy_type}) " if spec.energy_type else ""
        kind = f"{energy}{scheduler.config.prediction_type}{zsnr}"
        for name, steps in args.configs:
            for seed in args.seeds:
                start = time.perf_counter()
                options = SamplerOptions(name, steps, guidance, batch_size=args.batch_size, seed=seed, progress=False)
                images = generate_samples(model, conditioning, scheduler, labels, options, "cpu")
                predicted, features = predict(oracle, images.float())
                precision, recall = precision_recall(real, features)
                row = {
                    "model": model_dir,
                    "kind": kind,
                    "seed": seed,
                    "accuracy": float((predicted == torch.tensor(labels)).float().mean()),
                    "precision": precision,
                    "recall": recall,
                    "fid": frechet_distance(features, real),
                    "num_real": real.shape[0],
                    "seconds": time.perf_counter() - start,
                }
                results.setdefault(f"{name}:{steps}", []).append(row)
                print(json.dumps({"config": f"{name}:{steps}", **row}), flush=True)
    return results


def mean_sd(values: list[float], digits: int) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def trained_summary(results: dict) -> str:
    """Per config and model kind: mean ± sd over models × seeds of each measure."""
    lines = [
        "| sampler | model | runs | oracle accuracy ↑ | precision ↑ | recall ↑ | oracle-feature FID ↓ | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for config, rows in results.items():
        for kind in sorted({r["kind"] for r in rows}):
            rs = [r for r in rows if r["kind"] == kind]
            cells = [mean_sd([r[m] for r in rs], 3) for m in ("accuracy", "precision", "recall")]
            lines.append(
                f"| {config} | {kind} | {len(rs)} | {' | '.join(cells)} | {mean_sd([r['fid'] for r in rs], 1)} | "
                f"{statistics.median(r['seconds'] for r in rs):.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="study", required=True)
    a = sub.add_parser("analytic", help="exact denoisers of Gaussian targets")
    a.add_argument("--targets", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    a.add_argument("--parameterisations", nargs="+", choices=list(PARAMETERISATIONS), default=list(PARAMETERISATIONS))
    t = sub.add_parser("trained", help="exported class-conditional task models")
    t.add_argument("model_dirs", nargs="+", help="exported task folders (output_dir/task_<k>)")
    t.add_argument("--oracle", required=True, help="oracle folder (python -m continual_diffusers.evaluation)")
    t.add_argument("--data_path", default=None, help="real training images (default: the bundled digits)")
    t.add_argument("--test_data_path", default=None, help="real test images, added to the reference")
    t.add_argument("--num_samples", type=int, default=1000, help="samples per model, config and seed")
    t.add_argument("--seeds", type=int, nargs="+", default=[0])
    t.add_argument("--guidance_scale", type=float, default=2.0, help="for models trained with CFG")
    t.add_argument("--batch_size", type=int, default=500)
    for s in (a, t):
        s.add_argument("--configs", nargs="+", type=parse_config, default=[parse_config(c) for c in DEFAULT_CONFIGS])
        s.add_argument("--seed", type=int, default=0, help="sampling seed (analytic)")
        s.add_argument("--output_dir", default=os.path.join("outputs", "bench_sampler_fidelity"))
    args = p.parse_args()
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    os.makedirs(args.output_dir, exist_ok=True)
    results = run_analytic(args) if args.study == "analytic" else run_trained(args)
    summary = analytic_summary(results) if args.study == "analytic" else trained_summary(results)
    with open(os.path.join(args.output_dir, f"{args.study}.json"), "w") as fh:
        json.dump({"args": {k: v for k, v in vars(args).items()}, "results": results}, fh, indent=2)
    with open(os.path.join(args.output_dir, f"{args.study}.md"), "w") as fh:
        fh.write(summary + "\n")
    print(summary)


if __name__ == "__main__":
    main()
