"""Memorisation and diversity of a run's samples of one task, after the last task: near-copy fraction and distance
to the training set (relative to held-out real data), and k-NN precision / recall, in the oracle's feature space
(`continual_diffusers.evaluation.memorisation`). Several runs side by side, e.g. joint training against a small
replay buffer that may have been memorised:

    python benchmarks/bench_memorisation.py outputs/joint_seed0 outputs/replay_1pct_seed0 \
        --oracle outputs/cmp_oracle --task 1 --seeds 0 1

Default data: the bundled split digits (training and held-out test images of `--task`); the model is the run's last
export (task_<K>/). Prints one line per run (mean over sampling seeds) and the held-out images' own copy fraction,
the baseline a generator that learned the distribution should match.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics

import torch

from continual_diffusers.data import ImageTransform, TaskDataset, load_split_digits, load_tasks
from continual_diffusers.evaluation.classifier import load_oracle, predict
from continual_diffusers.evaluation.memorisation import (
    copy_fraction,
    nearest_training_distance_ratio,
    precision_recall,
)
from continual_diffusers.pipelines.loading import load_task_model
from continual_diffusers.sampling.generate import SamplerOptions, generate_samples


def features(oracle, resolution: int, task) -> torch.Tensor:
    batch = TaskDataset(task, ImageTransform(resolution, center_crop=True)).batch(torch.arange(len(task)))
    return predict(oracle, batch["images"])[1]


def last_export(run_dir: str) -> str:
    tasks = [int(m.group(1)) for name in os.listdir(run_dir) if (m := re.fullmatch(r"task_(\d+)", name))]
    if not tasks:
        raise SystemExit(f"{run_dir}: no task_<k>/ export")
    return os.path.join(run_dir, f"task_{max(tasks)}")


def measure(run_dir: str, args, oracle, resolution: int, train_feats, heldout_feats, classes) -> dict[str, float]:
    model, conditioning, scheduler, spec = load_task_model(last_export(run_dir))
    labels = [classes[i % len(classes)] for i in range(args.num_samples)]
    guidance = args.guidance_scale if spec.classifier_free_guidance else 1.0
    rows = []
    for seed in args.seeds:
        options = SamplerOptions(guidance_scale=guidance, seed=seed)
        samples = predict(oracle, generate_samples(model, conditioning, scheduler, labels, options, "cpu").float())[1]
        precision, recall = precision_recall(heldout_feats, samples, k=args.k)
        rows.append(
            {
                "copy": copy_fraction(samples, train_feats),
                "distance_ratio": nearest_training_distance_ratio(samples, train_feats, heldout_feats),
                "precision": precision,
                "recall": recall,
            }
        )
    return {key: statistics.mean(row[key] for row in rows) for key in rows[0]}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    p.add_argument("run_dirs", nargs="+", help="output dirs of class-conditional runs")
    p.add_argument("--oracle", required=True, help="oracle folder (python -m continual_diffusers.evaluation)")
    p.add_argument("--task", type=int, default=1, help="the task whose classes are sampled and compared")
    p.add_argument("--data_path", default=None, help="training task file (default: the bundled digits)")
    p.add_argument("--test_data_path", default=None, help="held-out task file (default: the bundled digits)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="sampling seeds")
    p.add_argument("--num_samples", type=int, default=100, help="samples per seed, balanced over the task's classes")
    p.add_argument("--guidance_scale", type=float, default=2.0)
    p.add_argument("--k", type=int, default=3, help="k of the k-NN manifolds (precision / recall)")
    args = p.parse_args()
    oracle, oracle_meta = load_oracle(args.oracle)
    resolution = int(oracle_meta["resolution"])
    default_train, default_test = load_split_digits()
    train = load_tasks(args.data_path) if args.data_path else default_train
    test = load_tasks(args.test_data_path) if args.test_data_path else default_test
    train_feats, heldout_feats = (
        features(oracle, resolution, train[args.task]),
        features(oracle, resolution, test[args.task]),
    )
    classes = train[args.task].classes()
    print(f"task {args.task} (classes {classes}); held-out images' own copy fraction: "
          f"{copy_fraction(heldout_feats, train_feats):.3f}")  # fmt: skip
    for run_dir in args.run_dirs:
        m = measure(run_dir, args, oracle, resolution, train_feats, heldout_feats, classes)
        print(f"{run_dir}: copy {m['copy']:.3f}  distance ratio {m['distance_ratio']:.3f}  "
              f"precision {m['precision']:.3f}  recall {m['recall']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
