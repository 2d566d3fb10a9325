"""How many evaluation samples per task does oracle-feature FID need? The same-distribution floor against the
naive-joint difference it has to resolve, per N.

For each N: (a) the floor of the evaluation protocol: FID of N real training images of a task against that task's M
held-out test images (a perfect generator's score at this N and M), and FID of two disjoint draws of N real images
(the pure N effect; up to half of train + test); (b) the final naive and joint models' FID on their first N
evaluation samples per task (the run's own sampler and seeds), and their difference, the gap. The evaluation's N
should keep the floor below a tenth of the gap. Means over tasks (and `--repeats` real draws); sd over tasks × draws.

    python benchmarks/bench_fid_floor.py --oracle_path outputs/cmp/oracle \
        --naive_run outputs/cmp/naive_seed0 --joint_run outputs/cmp/joint_seed0
    python benchmarks/bench_fid_floor.py --oracle_path o --data_path train.npz --test_data_path test.npz   # floor only
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from continual_diffusers.data import ImageTransform, TaskDataset, load_split_digits, load_tasks  # noqa: E402
from continual_diffusers.evaluation import ContinualEvaluator, frechet_distance, load_oracle, predict  # noqa: E402
from continual_diffusers.evaluation.__main__ import task_dirs  # noqa: E402
from continual_diffusers.evaluation.oracle import load_test_tasks  # noqa: E402
from continual_diffusers.pipelines.loading import load_task_model  # noqa: E402
from continual_diffusers.sampling.generate import SamplerOptions  # noqa: E402


def real_features(oracle, resolution: int, tasks) -> dict[int, torch.Tensor]:
    out = {}
    for task in tasks:
        ds = TaskDataset(task, ImageTransform(resolution, center_crop=True))
        out[task.task_id] = predict(oracle, ds.batch(torch.arange(len(ds)))["images"])[1]
    return out


def floors(train: dict, test: dict, n: int, repeats: int, generator) -> tuple[list[float], list[float]]:
    """FID(N training images, the M test images) and FID(N, N disjoint real draws) per task and repeat."""
    vs_test, vs_same = [], []
    for t in test:
        pool = torch.cat([train[t], test[t]])
        for _ in range(repeats):
            pick = torch.randperm(len(train[t]), generator=generator)[: min(n, len(train[t]))]
            vs_test.append(frechet_distance(train[t][pick], test[t]))
            half = min(n, len(pool) // 2)
            order = torch.randperm(len(pool), generator=generator)
            vs_same.append(frechet_distance(pool[order[:half]], pool[order[half : 2 * half]]))
    return vs_test, vs_same


def final_model_features(run_dir: str, oracle, oracle_config, test_tasks, n_max: int) -> dict[int, torch.Tensor]:
    """Oracle features of the run's last model's first `n_max` evaluation samples per seen task, drawn as the
    run's end-of-task evaluation draws them (its sampler flags and seed)."""
    import json

    with open(os.path.join(run_dir, "config.json")) as fh:
        run = json.load(fh)["args"]
    guidance = run["guidance_scale"] if run["classifier_free_guidance"] and run["uncond_p"] > 0 else 1.0
    options = SamplerOptions(
        run["scheduler"], run["num_inference_steps"], guidance, seed=run["seed"], eta=run["ddim_eta"]
    )
    model, conditioning, scheduler, spec = load_task_model(task_dirs(run_dir)[-1][1])
    evaluator = ContinualEvaluator(oracle, oracle_config["resolution"], test_tasks, n_max, options)
    out = {}
    for t in spec.seen_tasks:
        images = evaluator.task_samples(model, conditioning, scheduler, t, spec.classes_per_task, "cpu")[1]
        out[t] = evaluator._judge(images)[1]
    return out


def mean_sd(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--oracle_path", required=True)
    p.add_argument("--data_path", default=None, help="training task file (default: the bundled digits)")
    p.add_argument("--test_data_path", default=None)
    p.add_argument("--naive_run", default=None, help="a finished naive main_ddpm run (for the gap)")
    p.add_argument("--joint_run", default=None, help="a finished joint (--buffer_type all_data) run")
    p.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    oracle, oracle_config = load_oracle(args.oracle_path)
    train_tasks = load_tasks(args.data_path) if args.data_path else load_split_digits()[0]
    test_tasks = load_test_tasks(args.test_data_path, args.data_path)
    train = real_features(oracle, oracle_config["resolution"], train_tasks)
    test = real_features(oracle, oracle_config["resolution"], test_tasks)
    runs = {}
    if args.naive_run and args.joint_run:
        runs = {
            name: final_model_features(path, oracle, oracle_config, test_tasks, max(args.sizes))
            for name, path in (("naive", args.naive_run), ("joint", args.joint_run))
        }
    m = sorted({len(v) for v in test.values()})
    print(f"M = {m[0]}–{m[-1]} test images per task, {len(test)} tasks, {args.repeats} real draws per task and N\n")
    print("| N | floor: N train vs M test | floor: N vs N real | naive FID | joint FID | gap | floor / gap |")
    print("|---|---|---|---|---|---|---|")
    generator = torch.Generator().manual_seed(0)
    for n in args.sizes:
        vs_test, vs_same = floors(train, test, n, args.repeats, generator)
        row = f"| {n} | {mean_sd(vs_test)} | {mean_sd(vs_same)} |"
        if runs:
            fid = {k: [frechet_distance(f[t][:n], test[t]) for t in f] for k, f in runs.items()}
            gap = statistics.mean(fid["naive"]) - statistics.mean(fid["joint"])
            ratio = statistics.mean(vs_test) / gap
            row += f" {mean_sd(fid['naive'])} | {mean_sd(fid['joint'])} | {gap:.2f} | {ratio:.1%} |"
        else:
            row += " – | – | – | – |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
