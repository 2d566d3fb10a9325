"""Few-step samplers vs DDPM-1000 on a trained task model: network evaluations, wall time and, when an oracle
classifier is given (continual_diffusers.evaluation.classifier), the accuracy of the samples' labels; per-class
grids are always written. Do not run on shared CPUs with large settings: 1000 DDPM steps is the slow baseline.

    python benchmarks/bench_samplers.py outputs/demo/task_5 --num_samples 16
    python benchmarks/bench_samplers.py outputs/demo/task_5 --oracle outputs/oracle.safetensors --output_dir bench
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from continual_diffusers.models.loading import load_task_model
from continual_diffusers.sampling.generate import SamplerOptions, generate_samples
from continual_diffusers.utils.images import save_grid

CONFIGS = [("ddpm", 1000), ("ddim", 25), ("ddim", 10), ("dpm++", 25), ("dpm++", 10), ("euler_a", 25)]


def _accuracy_fn(path: str | None):
    if path is None:
        return None
    try:
        from continual_diffusers.evaluation.classifier import load_oracle, oracle_accuracy
    except ImportError:
        return None
    oracle, _ = load_oracle(path)
    return lambda images, labels: oracle_accuracy(oracle, images, torch.tensor(labels))


def bench(model_dir: str, num_samples: int, guidance: float, output_dir: str, oracle: str | None) -> list[dict]:
    model, conditioning, scheduler, meta = load_task_model(model_dir)
    classes = sorted({c for t in meta["seen_tasks"] for c in meta["classes_per_task"][str(t)]})
    per_class = meta["conditioning"] == "class"
    labels = [c for c in classes for _ in range(num_samples)] if per_class else [None] * num_samples
    calls = {"n": 0, "rows": 0}

    def count(_module, args, kwargs):
        calls["n"] += 1
        calls["rows"] += args[0].shape[0] if args else kwargs["sample"].shape[0]

    model.unet.register_forward_pre_hook(count, with_kwargs=True)
    accuracy = _accuracy_fn(oracle)
    rows = []
    for name, steps in CONFIGS:
        calls.update(n=0, rows=0)
        start = time.perf_counter()
        images = generate_samples(
            model,
            conditioning,
            scheduler,
            labels,
            SamplerOptions(name, steps, guidance if meta["classifier_free_guidance"] else 1.0, batch_size=len(labels)),
            "cpu",
        )
        row = {
            "scheduler": name,
            "steps": steps,
            "unet_calls": calls["n"],
            "unet_rows": calls["rows"],
            "seconds": round(time.perf_counter() - start, 2),
        }
        if accuracy is not None and meta["conditioning"] == "class":
            row["accuracy"] = accuracy(images, labels)
        save_grid(images, os.path.join(output_dir, f"{name}_{steps}.png"), nrow=num_samples)
        rows.append(row)
        print(json.dumps(row))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir", help="an exported task folder (output_dir/task_<k>)")
    p.add_argument("--num_samples", type=int, default=8, help="images per class")
    p.add_argument("--guidance_scale", type=float, default=2.0)
    p.add_argument("--oracle", default=None, help="oracle classifier file (evaluation.classifier.save_oracle)")
    p.add_argument("--output_dir", default="bench_samplers")
    args = p.parse_args()
    os.makedirs(args.output_dir, exist_ok=True)
    rows = bench(args.model_dir, args.num_samples, args.guidance_scale, args.output_dir, args.oracle)
    with open(os.path.join(args.output_dir, "results.json"), "w") as fh:
        json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
